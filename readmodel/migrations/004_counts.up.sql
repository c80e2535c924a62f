-- GET /stats and the dashboard: how many views are CONFIRMED and CANCELLED,
-- and how many events are recorded, without counting the tables (a scan of
-- 2.3 GB of order_views and 1.6 GB of events at a million sagas).
--
-- Each transaction that changes them appends one row of deltas: the
-- projection when views become (or stop being) terminal and when it records
-- events, the pruner when it deletes events. Appends only, and no index: no
-- row that two transactions both write, so the consumers never wait for each
-- other here. The sum of the rows is the count; the read model's Run loop
-- folds the rows into one every few seconds (compactCounts), so a reader sums
-- a handful. The views in flight (PENDING, RESERVED) are counted exactly from
-- order_views_in_flight instead: few, and what an operator watches.
--
-- Seeded from the tables as they are now: one scan, at the upgrade. Views and
-- events written by a read model of an older version running beside this one
-- (a rolling upgrade) after this point are not counted; a rebuild counts
-- afresh.
CREATE TABLE counts (
    confirmed bigint NOT NULL DEFAULT 0,
    cancelled bigint NOT NULL DEFAULT 0,
    events    bigint NOT NULL DEFAULT 0
);

-- A queue-like table (appended, then folded and deleted): vacuum it after a
-- few hundred dead rows, as the outbox.
ALTER TABLE counts SET (
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 500,
    autovacuum_vacuum_cost_delay = 0
);

INSERT INTO counts (confirmed, cancelled, events)
SELECT (SELECT count(*) FROM order_views WHERE status = 'CONFIRMED'),
       (SELECT count(*) FROM order_views WHERE status = 'CANCELLED'),
       (SELECT count(*) FROM events);
