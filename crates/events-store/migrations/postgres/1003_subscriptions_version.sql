-- A value that changes with every change to which subscriptions exist or what they match,
-- so each node may keep the parsed subscriptions of an event type in memory for as long as
-- it stands. From a sequence: a value a rolled-back change took is never handed out again.
CREATE SEQUENCE ev_subscriptions_version_seq;
CREATE TABLE ev_subscriptions_version (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    v  BIGINT NOT NULL
);
INSERT INTO ev_subscriptions_version (id, v) VALUES (1, nextval('ev_subscriptions_version_seq'));

CREATE FUNCTION ev_subscriptions_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE ev_subscriptions_version SET v = nextval('ev_subscriptions_version_seq') WHERE id = 1;
    RETURN NULL;
END;
$$;
CREATE TRIGGER ev_subscriptions_changed
    AFTER INSERT OR DELETE OR UPDATE OF event_type, criteria ON ev_subscriptions
    FOR EACH STATEMENT EXECUTE FUNCTION ev_subscriptions_changed();
