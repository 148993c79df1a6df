-- The events service's tables on the shared PostgreSQL (numbered from 1001 so that they
-- never collide with another service's migrations in the one _sqlx_migrations table).
-- Times are Unix milliseconds.

-- seq comes from the one-row counter below, taken as the last step before COMMIT: gapless
-- and visible in commit order, so a reader resuming "after N" never skips a late commit,
-- and every subscription's queue is in the order events were accepted.
CREATE TABLE ev_events (
    seq          BIGINT UNIQUE,
    source       TEXT NOT NULL,
    id           TEXT NOT NULL,
    type         TEXT NOT NULL,
    event        TEXT NOT NULL,
    legacy       TEXT,
    publisher    TEXT NOT NULL,
    received_at  BIGINT NOT NULL,
    PRIMARY KEY (source, id)
);
CREATE INDEX ev_events_type ON ev_events (type, seq);
CREATE INDEX ev_events_received ON ev_events (received_at);
CREATE TABLE ev_counter (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    last  BIGINT NOT NULL
);
INSERT INTO ev_counter (id, last) VALUES (1, 0);

CREATE TABLE ev_subscriptions (
    seq          BIGSERIAL PRIMARY KEY,
    id           TEXT NOT NULL UNIQUE,
    owner        TEXT NOT NULL,
    event_type   TEXT NOT NULL,
    criteria     TEXT NOT NULL,
    endpoint     TEXT NOT NULL,
    request      TEXT NOT NULL,
    status       TEXT NOT NULL,
    retry_at     BIGINT NOT NULL DEFAULT 0,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);
CREATE INDEX ev_subscriptions_owner ON ev_subscriptions (owner, seq);
CREATE INDEX ev_subscriptions_type ON ev_subscriptions (event_type);
CREATE UNIQUE INDEX ev_subscriptions_unique ON ev_subscriptions (owner, criteria, endpoint);

CREATE TABLE ev_deliveries (
    subscription_id TEXT NOT NULL,
    event_seq       BIGINT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    first_failed_at BIGINT,
    last_error      TEXT,
    PRIMARY KEY (subscription_id, event_seq)
);
CREATE INDEX ev_deliveries_event ON ev_deliveries (event_seq);

CREATE TABLE ev_dead_letters (
    subscription_id TEXT NOT NULL,
    event_seq       BIGINT NOT NULL,
    attempts        INTEGER NOT NULL,
    last_error      TEXT NOT NULL,
    failed_at       BIGINT NOT NULL,
    PRIMARY KEY (subscription_id, event_seq)
);
