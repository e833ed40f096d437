-- 0007_conversion_skips: conversions mapped to a destination that is disabled (its settings are
-- missing) are counted, one row per destination and reason, instead of one conversion_log row
-- per conversion and destination. A disabled destination is a fact of the playbook, not of the
-- event: a row per conversion said nothing more and tripled the log on a playbook that lists
-- four platforms with one configured.
CREATE TABLE conversion_skips (
    workspace_id TEXT NOT NULL,
    destination TEXT NOT NULL,
    reason TEXT NOT NULL,
    count INTEGER NOT NULL,
    first_at REAL NOT NULL,
    last_at REAL NOT NULL,
    PRIMARY KEY (workspace_id, destination, reason)
);
