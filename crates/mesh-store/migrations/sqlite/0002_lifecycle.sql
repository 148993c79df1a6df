-- Message lifecycle (API.md 5.7, 5.8) and the event log.

-- Unix seconds at which an accepted message leaves the inbox uncollected (the record's
-- `expires`), and of the latest state change (the record's newest event): the columns the
-- sweep selects on. Existing rows are filled from their JSON record.
ALTER TABLE messages ADD COLUMN expires_at INTEGER;
ALTER TABLE messages ADD COLUMN changed_at INTEGER;
UPDATE messages SET
    expires_at = CAST(strftime('%s', json_extract(record, '$.expires')) AS INTEGER),
    changed_at = CAST(strftime('%s', json_extract(record, '$.events[0].timestamp')) AS INTEGER);
CREATE INDEX messages_expiry ON messages (expires_at) WHERE status = 'accepted';
CREATE INDEX messages_changed ON messages (status, changed_at);
-- The rich views list a mailbox's messages newest first; ids begin with their creation
-- time (yyyyMMddHHmmssffffff), so id order is creation order.
CREATE INDEX messages_recipient_id ON messages (recipient_id, id);
CREATE INDEX messages_sender_id ON messages (sender_id, id);

-- Every state change of a message, appended in the transaction that makes the change.
-- AUTOINCREMENT: a sequence number is never reused, even after trimming every entry, and
-- a rolled-back write gives its number back (the writer's savepoint undoes it), so the
-- sequence has no gaps.
CREATE TABLE message_log (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    at            INTEGER NOT NULL,   -- Unix microseconds
    change        TEXT NOT NULL,
    message_id    TEXT NOT NULL,
    sender_id     TEXT NOT NULL,
    recipient_id  TEXT NOT NULL,
    workflow_id   TEXT NOT NULL,
    status        TEXT NOT NULL
);
CREATE INDEX message_log_at ON message_log (at);
