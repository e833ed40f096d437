-- 0012_variant_stats: per send step and template of a variant set, the messages queued and the
-- messages clicked at least once, folded from the log by the journeys stage in the processor's
-- transaction. A step with `selection: thompson` picks its next variant from these counts, so
-- they are derived state like the instances (rebuilt by `leadloop replay`).
CREATE TABLE variant_stats (
    workspace_id TEXT NOT NULL,
    journey_id TEXT NOT NULL,
    step_id TEXT NOT NULL,
    template TEXT NOT NULL,
    sends INTEGER NOT NULL,
    clicks INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, journey_id, step_id, template)
);
