-- The retention sweep keeps events a dead letter still refers to.
CREATE INDEX dead_letters_event ON dead_letters (event_seq);
