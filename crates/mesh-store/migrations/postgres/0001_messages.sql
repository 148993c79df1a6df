-- PostgreSQL schema, version 1. Migrations are expand/contract (docs/DEPLOYMENT.md): a
-- migration only adds (tables, nullable columns, indexes built CONCURRENTLY elsewhere) so
-- that nodes of the previous release keep working against it during a rolling upgrade;
-- removals wait for a later release, once no old node is left.

-- Message metadata. `record` holds the whole message (parties, metadata, status history)
-- as JSON text; the other columns are the fields queries select and order on.
CREATE TABLE messages (
    id            TEXT PRIMARY KEY,
    sender_id     TEXT NOT NULL,
    recipient_id  TEXT NOT NULL,
    workflow_id   TEXT NOT NULL,
    local_id      TEXT NOT NULL DEFAULT '',
    status        TEXT NOT NULL,
    total_chunks  INTEGER NOT NULL,
    -- Position in the recipient's inbox, drawn from `inbox_seq` when the message becomes
    -- accepted, under a per-recipient advisory lock so that positions within one inbox are
    -- handed out in commit order and a poller paging "after N" never skips one.
    inbox_seq     BIGINT,
    in_inbox      BOOLEAN NOT NULL DEFAULT TRUE,
    in_outbox     BOOLEAN NOT NULL DEFAULT TRUE,
    created       TIMESTAMPTZ NOT NULL,
    record        TEXT NOT NULL
);
CREATE SEQUENCE inbox_seq AS BIGINT;
CREATE INDEX messages_inbox ON messages (recipient_id, inbox_seq)
    WHERE status = 'accepted' AND in_inbox;
CREATE INDEX messages_local_id ON messages (sender_id, local_id) WHERE local_id <> '';

-- Payload chunks: small ones inline, large ones in the object store under `blob_key`.
CREATE TABLE chunks (
    message_id  TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    chunk_no    INTEGER NOT NULL,
    size        BIGINT NOT NULL,
    blob_key    TEXT,
    data        BYTEA,
    PRIMARY KEY (message_id, chunk_no)
);
CREATE INDEX chunks_blob_key ON chunks (blob_key) WHERE blob_key IS NOT NULL;

-- Authentication tokens already used (replay protection), shared by every node.
CREATE TABLE used_tokens (
    mailbox     TEXT NOT NULL,
    nonce       TEXT NOT NULL,
    count       BIGINT NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (mailbox, nonce, count)
);
CREATE INDEX used_tokens_expiry ON used_tokens (expires_at);

-- Leases for jobs that one node at a time should run (payload garbage collection).
CREATE TABLE leases (
    name        TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL
);

-- Request counts per mailbox per window, for a rate limit that holds across nodes.
CREATE TABLE rate_windows (
    mailbox       TEXT NOT NULL,
    window_start  BIGINT NOT NULL,
    hits          BIGINT NOT NULL,
    PRIMARY KEY (mailbox, window_start)
);
