-- 0015_outbox_gone: endpoints whose receiver answered 410 Gone, the Standard Webhooks way of
-- asking a sender to stop. While a row is here, deliveries of that kind to that destination and
-- URL are dead letters without a request; a re-drive of any of them deletes the row, and so
-- sends again. Keyed by the URL too: a playbook that points the destination elsewhere is not held.
CREATE TABLE outbox_gone (
    workspace_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    destination TEXT NOT NULL,
    url TEXT NOT NULL,
    since DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (workspace_id, kind, destination)
);
