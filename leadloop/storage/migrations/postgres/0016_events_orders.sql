-- 0016_events_orders: the log's orders alone, by buyer. Metrics read revenue over a window and
-- each buyer's first order; without this they read every event of the log on each request
-- (with it, every order's entry, and the bodies of the window's orders only). Partial, so the
-- other events (nearly all of them) cost nothing more to append. Creating it reads the log once.
CREATE INDEX events_orders ON events (workspace_id, profile_id, ts)
    WHERE type = 'track' AND event = 'Order Completed';
