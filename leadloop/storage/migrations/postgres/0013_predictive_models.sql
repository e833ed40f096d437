-- 0013_predictive_models: per workspace and scoring model, the predictive model last trained by
-- `leadloop predict train`: its columns, weights and cross-validated report, as JSON. It holds
-- weights per trait level seen on at least ten profiles and each number's decile cut-offs (a
-- value some profiles have, not who has it), and it is served only while the playbook's
-- `predict` section still has the digest it names.
CREATE TABLE predictive_models (
    workspace_id TEXT NOT NULL,
    model_id TEXT NOT NULL,
    spec_digest TEXT NOT NULL,
    trained_at DOUBLE PRECISION NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (workspace_id, model_id)
);
