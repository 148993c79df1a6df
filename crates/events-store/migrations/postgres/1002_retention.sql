-- The retention sweep keeps events a dead letter still refers to.
CREATE INDEX ev_dead_letters_event ON ev_dead_letters (event_seq);
