-- 0001_initial: workspaces, keys, the event log, profiles and the identity graph, accounts,
-- timers and the outbox. Times are DOUBLE PRECISION seconds since the epoch, JSON is stored as TEXT.
CREATE TABLE workspaces (
    id TEXT PRIMARY KEY,
    created_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE write_keys (
    key_hash TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    name TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE admin_tokens (
    token_hash TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    name TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE events (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    txid xid8 NOT NULL DEFAULT pg_current_xact_id(),
    workspace_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    type TEXT NOT NULL,
    event TEXT,
    user_id TEXT,
    anonymous_id TEXT,
    group_id TEXT,
    previous_id TEXT,
    ts DOUBLE PRECISION NOT NULL,
    received_at DOUBLE PRECISION NOT NULL,
    body TEXT NOT NULL,
    profile_id TEXT
);
CREATE UNIQUE INDEX events_message ON events (workspace_id, message_id);
CREATE INDEX events_profile ON events (workspace_id, profile_id, seq);
CREATE TABLE cursors (
    name TEXT PRIMARY KEY,
    position TEXT NOT NULL
);
CREATE TABLE profiles (
    workspace_id TEXT NOT NULL,
    id TEXT NOT NULL,
    state TEXT NOT NULL,
    merged_into TEXT,
    updated_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (workspace_id, id)
);
CREATE TABLE identities (
    workspace_id TEXT NOT NULL,
    type TEXT NOT NULL,
    value TEXT NOT NULL,
    profile_id TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (workspace_id, type, value)
);
CREATE INDEX identities_profile ON identities (workspace_id, profile_id);
CREATE TABLE identity_audit (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    profile_id TEXT NOT NULL,
    other_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    event_seq BIGINT NOT NULL,
    at DOUBLE PRECISION NOT NULL
);
CREATE INDEX identity_audit_profile ON identity_audit (workspace_id, profile_id);
CREATE TABLE accounts (
    workspace_id TEXT NOT NULL,
    id TEXT NOT NULL,
    traits TEXT NOT NULL,
    first_seen DOUBLE PRECISION NOT NULL,
    last_seen DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (workspace_id, id)
);
CREATE TABLE account_members (
    workspace_id TEXT NOT NULL,
    account_id TEXT NOT NULL,
    profile_id TEXT NOT NULL,
    PRIMARY KEY (workspace_id, account_id, profile_id)
);
CREATE INDEX account_members_profile ON account_members (workspace_id, profile_id);
CREATE TABLE timers (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    key TEXT NOT NULL,
    profile_id TEXT,
    due_at DOUBLE PRECISION NOT NULL,
    payload TEXT NOT NULL
);
CREATE UNIQUE INDEX timers_key ON timers (workspace_id, key);
CREATE INDEX timers_due ON timers (due_at);
CREATE TABLE outbox (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    destination TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    next_attempt_at DOUBLE PRECISION NOT NULL,
    last_error TEXT,
    profile_id TEXT,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);
CREATE UNIQUE INDEX outbox_key ON outbox (workspace_id, kind, idempotency_key);
CREATE INDEX outbox_due ON outbox (status, next_attempt_at);
-- The processor reads the log in (txid, seq) order, below the oldest running transaction,
-- so a row whose transaction commits late is never skipped (docs/decisions/0002).
CREATE INDEX events_txid ON events (txid, seq);
