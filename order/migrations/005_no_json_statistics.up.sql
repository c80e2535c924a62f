-- No query filters, joins or sorts on an order's items: statistics on them
-- only cost autovacuum's ANALYZE the time to sort sampled JSON documents.
ALTER TABLE orders ALTER COLUMN items SET STATISTICS 0;
