-- A SKU's stock row is updated by every reservation, commit and release of
-- that SKU: a few rows take most of the writes. Leave half of each page free
-- so that every update can be a HOT update on the same page (no new index
-- entry), and vacuum after every few hundred dead versions rather than 20%
-- of a table that has only a handful of rows.
ALTER TABLE stock SET (
    fillfactor = 50,
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 200,
    autovacuum_vacuum_cost_delay = 0
);

-- A reservation is updated once (HELD to COMMITTED or RELEASED).
ALTER TABLE reservations SET (fillfactor = 80);
