-- A small statistics sample (see the inbox's, internal/pg): orders are read
-- by order id, by idempotency key and through the deadline index; the
-- planner needs the table's size and the spread of status, not 30,000
-- sampled rows sorted column by column each time the table grows by a
-- tenth.
ALTER TABLE orders
    ALTER COLUMN order_id SET STATISTICS 10,
    ALTER COLUMN customer_id SET STATISTICS 10,
    ALTER COLUMN total_cents SET STATISTICS 10,
    ALTER COLUMN status SET STATISTICS 10,
    ALTER COLUMN reason SET STATISTICS 10,
    ALTER COLUMN payment_failed SET STATISTICS 10,
    ALTER COLUMN version SET STATISTICS 10,
    ALTER COLUMN idempotency_key SET STATISTICS 10,
    ALTER COLUMN request_hash SET STATISTICS 10,
    ALTER COLUMN created_at SET STATISTICS 10,
    ALTER COLUMN updated_at SET STATISTICS 10,
    ALTER COLUMN deadline SET STATISTICS 10,
    ALTER COLUMN created_event_id SET STATISTICS 10,
    ALTER COLUMN trace_parent SET STATISTICS 10,
    ALTER COLUMN trace_state SET STATISTICS 10;
