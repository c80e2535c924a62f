-- A small statistics sample (see the inbox's, internal/pg): the orders
-- payment knows of and its payments are read by order id; the planner
-- needs the tables' sizes, not 30,000 sampled rows sorted column by column
-- each time a table grows by a tenth.
ALTER TABLE orders
    ALTER COLUMN order_id SET STATISTICS 10,
    ALTER COLUMN total_cents SET STATISTICS 10,
    ALTER COLUMN created_event_id SET STATISTICS 10,
    ALTER COLUMN confirmed SET STATISTICS 10,
    ALTER COLUMN recorded_at SET STATISTICS 10;

ALTER TABLE payments
    ALTER COLUMN order_id SET STATISTICS 10,
    ALTER COLUMN payment_id SET STATISTICS 10,
    ALTER COLUMN amount_cents SET STATISTICS 10,
    ALTER COLUMN status SET STATISTICS 10,
    ALTER COLUMN reason SET STATISTICS 10,
    ALTER COLUMN created_at SET STATISTICS 10,
    ALTER COLUMN refunded_at SET STATISTICS 10;
