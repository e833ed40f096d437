-- 0010_erased_ids: the anonymous ids a sender declared erased for good. HubSpot's privacy
-- deletion names a contact that can never come back (a contact created later gets a new id),
-- yet HubSpot does not order its deliveries and retries refused ones, so events of that contact
-- can arrive after the deletion; stored, they would start the person again. An inbound
-- delivery's events carrying an id listed here are dropped. Only a SHA-256 digest of the id is
-- kept (ingest/erased.py): enough to recognise it, nothing to read it back from.
CREATE TABLE erased_ids (
    workspace_id TEXT NOT NULL,
    digest TEXT NOT NULL,
    erased_at REAL NOT NULL,
    PRIMARY KEY (workspace_id, digest)
);
