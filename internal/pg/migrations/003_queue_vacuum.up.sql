-- The outbox is a queue table: every row is inserted, read once by the relay
-- and deleted. Left to the default (vacuum after 20% of the table is dead), a
-- busy outbox drags thousands of dead rows and index entries that every relay
-- scan from the head walks over. Vacuum it after every few hundred dead rows,
-- without the cost-based pauses: a vacuum of a small table is cheap.
ALTER TABLE outbox SET (
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 500,
    autovacuum_vacuum_cost_delay = 0
);

-- The inbox only grows (until retention prunes it): vacuum it for its
-- visibility map often enough that index-only checks stay cheap.
ALTER TABLE inbox SET (
    autovacuum_vacuum_insert_scale_factor = 0,
    autovacuum_vacuum_insert_threshold = 20000
);
