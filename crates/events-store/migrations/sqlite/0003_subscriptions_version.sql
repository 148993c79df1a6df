-- A value that changes with every change to which subscriptions exist or what they match,
-- so a node may keep the parsed subscriptions of an event type in memory for as long as it
-- stands. random(): a value a rolled-back change used is never seen again.
CREATE TABLE subscriptions_version (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    v  INTEGER NOT NULL
);
INSERT INTO subscriptions_version (id, v) VALUES (1, random());

CREATE TRIGGER subscriptions_added AFTER INSERT ON subscriptions
BEGIN
    UPDATE subscriptions_version SET v = random() WHERE id = 1;
END;
CREATE TRIGGER subscriptions_changed AFTER UPDATE OF event_type, criteria ON subscriptions
BEGIN
    UPDATE subscriptions_version SET v = random() WHERE id = 1;
END;
CREATE TRIGGER subscriptions_removed AFTER DELETE ON subscriptions
BEGIN
    UPDATE subscriptions_version SET v = random() WHERE id = 1;
END;
