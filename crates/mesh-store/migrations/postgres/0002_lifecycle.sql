-- Message lifecycle (API.md 5.7, 5.8) and the event log. Expand only: new nullable
-- columns, new tables and indexes. A node of the previous release writes NULL into the
-- new columns; its messages are then never swept until a new node changes them.

-- The backfill and the indexes touch every row once; on a large table that outlasts the
-- nodes' statement timeout, which must not roll the migration back.
SET LOCAL statement_timeout = 0;

ALTER TABLE messages ADD COLUMN expires_at TIMESTAMPTZ;
ALTER TABLE messages ADD COLUMN changed_at TIMESTAMPTZ;
UPDATE messages SET
    expires_at = (record::jsonb ->> 'expires')::timestamptz,
    changed_at = (record::jsonb -> 'events' -> 0 ->> 'timestamp')::timestamptz;
CREATE INDEX messages_expiry ON messages (expires_at) WHERE status = 'accepted';
CREATE INDEX messages_changed ON messages (status, changed_at);
CREATE INDEX messages_recipient_id ON messages (recipient_id, id);
CREATE INDEX messages_sender_id ON messages (sender_id, id);

-- Every state change of a message, appended in the transaction that makes the change.
-- Sequence numbers come from the one-row counter below, not from a SEQUENCE: a sequence
-- leaves gaps on rollback and hands out numbers in start order, not commit order. The
-- counter's row lock, taken as the last step before COMMIT, makes numbers gapless and
-- visible in order, so a reader resuming "after N" never skips an entry that commits late.
CREATE TABLE message_log (
    seq           BIGINT PRIMARY KEY,
    at            TIMESTAMPTZ NOT NULL,
    change        TEXT NOT NULL,
    message_id    TEXT NOT NULL,
    sender_id     TEXT NOT NULL,
    recipient_id  TEXT NOT NULL,
    workflow_id   TEXT NOT NULL,
    status        TEXT NOT NULL
);
CREATE INDEX message_log_at ON message_log (at);
CREATE TABLE message_log_counter (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    last  BIGINT NOT NULL
);
INSERT INTO message_log_counter (id, last) VALUES (1, 0);
