-- Every hop checks what it is told (docs/DESIGN.md): the order service
-- consumes its own order.created (order-orders), and an order.created it
-- never wrote (forged, or a bug) is recorded as an order CANCELLED with
-- reason unknown_order, so that inventory releases what it held for it and
-- payment charges nothing for it.
ALTER TABLE orders DROP CONSTRAINT orders_reason_check;
ALTER TABLE orders ADD CONSTRAINT orders_reason_check
    CHECK (reason IN ('', 'out_of_stock', 'unknown_sku', 'payment_failed', 'timeout', 'unknown_order'));
