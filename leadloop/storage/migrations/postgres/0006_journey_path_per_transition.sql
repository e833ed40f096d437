-- 0006_journey_path_per_transition: one journey_path row per transition instead of one per
-- step passed through. The row's step, at, kind and detail are the transition's first line
-- (what moved the instance: entered, waited, timed_out, ...); `more_lines` holds the lines
-- that followed in the same transition as a JSON list of [at, step, kind, detail], NULL when
-- there were none. Rows written before this migration have one line each.
ALTER TABLE journey_path ADD COLUMN more_lines TEXT;
