-- No query filters, joins or sorts on these JSON documents: statistics on
-- them only cost autovacuum's ANALYZE the time to sort thousands of sampled
-- documents (jsonb comparison) every time the table has grown by a tenth,
-- which under load was a large share of Postgres' CPU.
ALTER TABLE order_views ALTER COLUMN timeline SET STATISTICS 0;
ALTER TABLE order_views ALTER COLUMN items SET STATISTICS 0;
ALTER TABLE events ALTER COLUMN body SET STATISTICS 0;
