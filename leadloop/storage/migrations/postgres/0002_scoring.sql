-- 0002_scoring: applied playbooks, score state per profile and model, the score ledger.
CREATE TABLE playbooks (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    digest TEXT NOT NULL,
    source TEXT NOT NULL,
    applied_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX playbooks_workspace ON playbooks (workspace_id, id);
CREATE TABLE scores (
    workspace_id TEXT NOT NULL,
    profile_id TEXT NOT NULL,
    model TEXT NOT NULL,
    state TEXT NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (workspace_id, profile_id, model)
);
CREATE TABLE score_ledger (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    profile_id TEXT NOT NULL,
    model TEXT NOT NULL,
    model_version TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    kind TEXT NOT NULL,
    rule TEXT,
    points DOUBLE PRECISION NOT NULL,
    fit DOUBLE PRECISION NOT NULL,
    engagement DOUBLE PRECISION NOT NULL,
    total DOUBLE PRECISION NOT NULL,
    stage TEXT NOT NULL,
    reason TEXT NOT NULL,
    message_id TEXT
);
CREATE INDEX score_ledger_profile ON score_ledger (workspace_id, profile_id, model, id);
