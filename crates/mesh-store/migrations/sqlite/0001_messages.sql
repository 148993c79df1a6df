-- Message metadata. `record` holds the whole message (parties, metadata, status history)
-- as JSON; the other columns are the fields queries select and order on.
CREATE TABLE messages (
    id            TEXT PRIMARY KEY NOT NULL,
    sender_id     TEXT NOT NULL,
    recipient_id  TEXT NOT NULL,
    workflow_id   TEXT NOT NULL,
    local_id      TEXT NOT NULL DEFAULT '',
    status        TEXT NOT NULL,
    total_chunks  INTEGER NOT NULL,
    -- Position in the recipient's inbox, given when the message becomes accepted, so the
    -- inbox lists messages in the order they became available (API.md 3.2).
    inbox_seq     INTEGER,
    -- Cleared by the sandbox "reset mailbox" call; the message stays addressable by id.
    in_inbox      INTEGER NOT NULL DEFAULT 1,
    in_outbox     INTEGER NOT NULL DEFAULT 1,
    created       TEXT NOT NULL,
    record        TEXT NOT NULL
);
CREATE INDEX messages_inbox ON messages (recipient_id, inbox_seq)
    WHERE status = 'accepted' AND in_inbox = 1;
CREATE INDEX messages_seq ON messages (inbox_seq);
CREATE INDEX messages_local_id ON messages (sender_id, local_id) WHERE local_id <> '';

-- Payload chunks: small ones inline, large ones in the blob store under `blob_key`.
CREATE TABLE chunks (
    message_id  TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    chunk_no    INTEGER NOT NULL,
    size        INTEGER NOT NULL,
    blob_key    TEXT,
    data        BLOB,
    PRIMARY KEY (message_id, chunk_no)
);
CREATE INDEX chunks_blob_key ON chunks (blob_key) WHERE blob_key IS NOT NULL;
