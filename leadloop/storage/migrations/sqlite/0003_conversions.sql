-- 0003_conversions: match keys per profile (click ids, browser ids, IP, user agent, consent,
-- each with its capture time) and one record per conversion and destination, queued or
-- skipped with the reason; delivery states live on the conversion's outbox row.
CREATE TABLE conversion_keys (
    workspace_id TEXT NOT NULL,
    profile_id TEXT NOT NULL,
    state TEXT NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (workspace_id, profile_id)
);
CREATE TABLE conversion_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    workspace_id TEXT NOT NULL,
    profile_id TEXT NOT NULL,
    destination TEXT NOT NULL,
    event_id TEXT NOT NULL,
    event_name TEXT NOT NULL,
    mapping TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    has_email INTEGER NOT NULL,
    has_phone INTEGER NOT NULL,
    has_click_id INTEGER NOT NULL,
    has_browser_id INTEGER NOT NULL,
    event_time REAL NOT NULL,
    at REAL NOT NULL
);
CREATE UNIQUE INDEX conversion_log_key ON conversion_log (workspace_id, destination, event_id);
CREATE INDEX conversion_log_status ON conversion_log (workspace_id, destination, status);
