-- 0008_erasure_epoch: a counter every erasure moves, in its own transaction, before deleting
-- anything. The processor reads it before a batch reads anything and checks it again, under a
-- lock, when it writes the batch: a batch decided across an erasure is decided again instead
-- of writing the erased person back (identity/erase.py, log/processor.py). One row, no profile
-- ids: it records that an erasure happened, not whom it erased.
CREATE TABLE erasure_epoch (
    id INTEGER PRIMARY KEY,
    n BIGINT NOT NULL
);
INSERT INTO erasure_epoch (id, n) VALUES (1, 0);
