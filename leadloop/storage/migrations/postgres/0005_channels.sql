-- 0005_channels: message records with their lifecycle (one row per message, one row per
-- transition with its reason), the suppression list, messaging service windows (last inbound
-- message per address) and the generated key that signs tracking links.
CREATE TABLE message_records (
    workspace_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    profile_id TEXT,
    channel TEXT NOT NULL,
    template TEXT,
    journey TEXT,
    step TEXT,
    address TEXT,
    provider_id TEXT,
    status TEXT NOT NULL,
    reason TEXT NOT NULL,
    sent_at DOUBLE PRECISION,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (workspace_id, message_id)
);
CREATE INDEX message_records_profile ON message_records (workspace_id, profile_id, created_at);
CREATE INDEX message_records_provider ON message_records (provider_id);
CREATE INDEX message_records_address ON message_records (workspace_id, channel, address);
CREATE TABLE message_transitions (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL
);
CREATE INDEX message_transitions_message ON message_transitions (workspace_id, message_id, id);
CREATE TABLE channel_suppressions (
    workspace_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    address TEXT NOT NULL,
    reason TEXT NOT NULL,
    source TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (workspace_id, channel, address)
);
CREATE TABLE channel_windows (
    workspace_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    address TEXT NOT NULL,
    last_inbound_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (workspace_id, channel, address)
);
CREATE TABLE channel_secrets (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
);
