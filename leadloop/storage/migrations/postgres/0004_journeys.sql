-- 0004_journeys: journey versions, running instances and their path, per-profile journey
-- memberships (re-entry, segment entry), every send decision of the contact policy, and the
-- suppression list.
CREATE TABLE journey_versions (
    workspace_id TEXT NOT NULL,
    journey_id TEXT NOT NULL,
    version TEXT NOT NULL,
    definition TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (workspace_id, journey_id, version)
);
CREATE TABLE journey_instances (
    workspace_id TEXT NOT NULL,
    id TEXT NOT NULL,
    profile_id TEXT NOT NULL,
    journey_id TEXT NOT NULL,
    version TEXT NOT NULL,
    step TEXT,
    status TEXT NOT NULL,
    holdout INTEGER NOT NULL,
    entered_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    ended_at DOUBLE PRECISION,
    reason TEXT NOT NULL,
    state TEXT NOT NULL,
    PRIMARY KEY (workspace_id, id)
);
CREATE INDEX journey_instances_profile ON journey_instances (workspace_id, profile_id, status);
CREATE INDEX journey_instances_step ON journey_instances (workspace_id, journey_id, version, step, status);
CREATE TABLE journey_profiles (
    workspace_id TEXT NOT NULL,
    profile_id TEXT NOT NULL,
    state TEXT NOT NULL,
    PRIMARY KEY (workspace_id, profile_id)
);
CREATE TABLE journey_path (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    profile_id TEXT NOT NULL,
    journey_id TEXT NOT NULL,
    version TEXT NOT NULL,
    step TEXT,
    at DOUBLE PRECISION NOT NULL,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX journey_path_instance ON journey_path (workspace_id, instance_id, id);
CREATE INDEX journey_path_profile ON journey_path (workspace_id, profile_id, id);
CREATE TABLE sends (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    profile_id TEXT NOT NULL,
    instance_id TEXT,
    journey_id TEXT,
    step TEXT,
    requested_channel TEXT NOT NULL,
    channel TEXT,
    template TEXT NOT NULL,
    transactional INTEGER NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    outcome TEXT NOT NULL,
    reason TEXT NOT NULL,
    until DOUBLE PRECISION
);
CREATE INDEX sends_profile ON sends (workspace_id, profile_id, at);
CREATE TABLE suppressions (
    workspace_id TEXT NOT NULL,
    profile_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (workspace_id, profile_id, channel)
);
