-- A small statistics sample (see the inbox's, internal/pg): reservations
-- and their items are read by order id; the planner needs the tables'
-- sizes, not 30,000 sampled rows sorted column by column each time a table
-- grows by a tenth.
ALTER TABLE reservations
    ALTER COLUMN order_id SET STATISTICS 10,
    ALTER COLUMN status SET STATISTICS 10,
    ALTER COLUMN reason SET STATISTICS 10,
    ALTER COLUMN created_at SET STATISTICS 10,
    ALTER COLUMN updated_at SET STATISTICS 10,
    ALTER COLUMN created_event_id SET STATISTICS 10,
    ALTER COLUMN reserved_event_id SET STATISTICS 10,
    ALTER COLUMN total_cents SET STATISTICS 10;

ALTER TABLE reservation_items
    ALTER COLUMN order_id SET STATISTICS 10,
    ALTER COLUMN sku SET STATISTICS 10,
    ALTER COLUMN qty SET STATISTICS 10;
