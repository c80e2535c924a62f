-- A small statistics sample (see the inbox's, internal/pg): events and
-- order_views are read by order id (their primary keys, events_order) and
-- through partial indexes whose predicates are in the queries' text; the
-- planner needs their sizes and the spread of status, not 30,000 sampled
-- rows sorted column by column each time the table grows by a tenth. The
-- sequence arrays get none at all: nothing filters on their elements, and
-- element statistics were the dearest part of ANALYZE of order_views. At
-- 42,000 views and 170,000 events, ANALYZE went from 346 to 17 ms and from
-- 126 to 18 ms.
ALTER TABLE events
    ALTER COLUMN event_id SET STATISTICS 10,
    ALTER COLUMN order_id SET STATISTICS 10,
    ALTER COLUMN event_type SET STATISTICS 10,
    ALTER COLUMN causation_id SET STATISTICS 10,
    ALTER COLUMN occurred_at SET STATISTICS 10,
    ALTER COLUMN projected_at SET STATISTICS 10,
    ALTER COLUMN stream SET STATISTICS 10,
    ALTER COLUMN seq SET STATISTICS 10;

ALTER TABLE order_views
    ALTER COLUMN order_id SET STATISTICS 10,
    ALTER COLUMN customer_id SET STATISTICS 10,
    ALTER COLUMN total_cents SET STATISTICS 10,
    ALTER COLUMN status SET STATISTICS 10,
    ALTER COLUMN reason SET STATISTICS 10,
    ALTER COLUMN version SET STATISTICS 10,
    ALTER COLUMN last_occurred_at SET STATISTICS 10,
    ALTER COLUMN updated_at SET STATISTICS 10,
    ALTER COLUMN lag_ms SET STATISTICS 10,
    ALTER COLUMN orders_seqs SET STATISTICS 0,
    ALTER COLUMN inventory_seqs SET STATISTICS 0,
    ALTER COLUMN payments_seqs SET STATISTICS 0,
    ALTER COLUMN pruned SET STATISTICS 10,
    ALTER COLUMN created_at SET STATISTICS 10;
