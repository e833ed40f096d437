-- 0017_parked_events: events the processor set aside because deciding or writing them failed,
-- alone, every time it was tried (a bug, or data no rule anticipated). The event stays in the
-- log; this row, written in the transaction that moves the cursor past it, says why it was
-- not processed, until a re-drive processes it (and deletes the row). One row per event: a
-- replay that parks it again updates the row (docs/decisions/0006-parked-events.md).
CREATE TABLE parked_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    workspace_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    message_id TEXT NOT NULL,
    type TEXT NOT NULL,
    event TEXT,
    error TEXT NOT NULL,
    message TEXT NOT NULL,
    traceback TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    parked_at REAL NOT NULL,
    redrive_requested_at REAL
);
CREATE UNIQUE INDEX parked_events_seq ON parked_events (seq);
