-- 0002_scoring: applied playbooks, score state per profile and model, the score ledger.
CREATE TABLE playbooks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    workspace_id TEXT NOT NULL,
    digest TEXT NOT NULL,
    source TEXT NOT NULL,
    applied_at REAL NOT NULL
);
CREATE INDEX playbooks_workspace ON playbooks (workspace_id, id);
CREATE TABLE scores (
    workspace_id TEXT NOT NULL,
    profile_id TEXT NOT NULL,
    model TEXT NOT NULL,
    state TEXT NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (workspace_id, profile_id, model)
);
CREATE TABLE score_ledger (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    workspace_id TEXT NOT NULL,
    profile_id TEXT NOT NULL,
    model TEXT NOT NULL,
    model_version TEXT NOT NULL,
    at REAL NOT NULL,
    kind TEXT NOT NULL,
    rule TEXT,
    points REAL NOT NULL,
    fit REAL NOT NULL,
    engagement REAL NOT NULL,
    total REAL NOT NULL,
    stage TEXT NOT NULL,
    reason TEXT NOT NULL,
    message_id TEXT
);
CREATE INDEX score_ledger_profile ON score_ledger (workspace_id, profile_id, model, id);
