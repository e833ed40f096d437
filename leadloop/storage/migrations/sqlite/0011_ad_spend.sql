-- 0011_ad_spend: what was spent on ads per day, source (ad platform), campaign and currency,
-- imported by `leadloop spend import`, so the metrics can give CAC and ROAS. One row per key:
-- importing the same day again replaces it, so a re-import of a corrected export is not added
-- twice.
CREATE TABLE ad_spend (
    workspace_id TEXT NOT NULL,
    day TEXT NOT NULL,
    source TEXT NOT NULL,
    campaign TEXT NOT NULL,
    currency TEXT NOT NULL,
    amount REAL NOT NULL,
    imported_at REAL NOT NULL,
    PRIMARY KEY (workspace_id, day, source, campaign, currency)
);
