-- The events service's embedded store (events.db). Times are Unix milliseconds.

-- Every accepted event, once per (source, id). seq is the order of acceptance, handed out
-- by the one writer, so a reader resuming "after N" misses nothing.
CREATE TABLE events (
    seq          INTEGER PRIMARY KEY,
    source       TEXT NOT NULL,
    id           TEXT NOT NULL,
    type         TEXT NOT NULL,
    event        TEXT NOT NULL,
    legacy       TEXT,
    publisher    TEXT NOT NULL,
    received_at  INTEGER NOT NULL,
    UNIQUE (source, id)
);
CREATE INDEX events_type ON events (type, seq);
CREATE INDEX events_received ON events (received_at);

-- retry_at: the subscription's queue waits until then after a failed delivery (its head
-- is retried first: deliveries keep their order).
CREATE TABLE subscriptions (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    id           TEXT NOT NULL UNIQUE,
    owner        TEXT NOT NULL,
    event_type   TEXT NOT NULL,
    criteria     TEXT NOT NULL,
    endpoint     TEXT NOT NULL,
    request      TEXT NOT NULL,
    status       TEXT NOT NULL,
    retry_at     INTEGER NOT NULL DEFAULT 0,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);
CREATE INDEX subscriptions_owner ON subscriptions (owner, seq);
CREATE INDEX subscriptions_type ON subscriptions (event_type);
CREATE UNIQUE INDEX subscriptions_unique ON subscriptions (owner, criteria, endpoint);

-- Each subscription's queue: the events it has still to receive, in event order.
CREATE TABLE deliveries (
    subscription_id TEXT NOT NULL,
    event_seq       INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    first_failed_at INTEGER,
    last_error      TEXT,
    PRIMARY KEY (subscription_id, event_seq)
);
CREATE INDEX deliveries_event ON deliveries (event_seq);

-- Deliveries given up on after the retry period, kept for the operator.
CREATE TABLE dead_letters (
    subscription_id TEXT NOT NULL,
    event_seq       INTEGER NOT NULL,
    attempts        INTEGER NOT NULL,
    last_error      TEXT NOT NULL,
    failed_at       INTEGER NOT NULL,
    PRIMARY KEY (subscription_id, event_seq)
);
