-- 0009_outbox_payloads: an outbox row's payload moves to a table of its own, keyed by the row's
-- id. The payload is written once (when the effect is enqueued) and read once per attempt; the
-- row's delivery state changes at least twice (claimed, then delivered or retried). With the
-- payload inline (about 900 bytes for a conversion), every one of those changes rewrote it: on
-- SQLite an UPDATE writes the whole record, so a claim and a delivery each dirtied a page per
-- four rows; on PostgreSQL each wrote a new tuple with the payload in it.
CREATE TABLE outbox_payloads (
    id BIGINT PRIMARY KEY,
    payload TEXT NOT NULL
);
INSERT INTO outbox_payloads (id, payload) SELECT id, payload FROM outbox;
ALTER TABLE outbox DROP COLUMN payload;
