-- 0014_sends_variant: whether a variant set chose the message's template (and its send was
-- counted in `variant_stats`). A click counts for its variant only then: a message a step sent
-- before it had variants, or one of a variant since removed, is told apart by its own send, not
-- by whichever playbook is live when the click comes. Found by message id, as a click names it.
ALTER TABLE sends ADD COLUMN variant INTEGER NOT NULL DEFAULT 0;
-- Sends already counted: those of a template that has counts for its step (`leadloop replay`
-- rebuilds the column exactly from the log).
UPDATE sends SET variant = 1 WHERE outcome IN ('queued', 'rerouted') AND EXISTS (
    SELECT 1 FROM variant_stats v WHERE v.workspace_id = sends.workspace_id
    AND v.journey_id = sends.journey_id AND v.step_id = sends.step AND v.template = sends.template
);
CREATE INDEX sends_message ON sends (workspace_id, message_id);
