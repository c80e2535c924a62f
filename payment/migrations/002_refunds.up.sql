-- Saga deadlines and refunds (docs/DESIGN.md, "Deadlines"). The payment
-- service consumes order.cancelled: a COMPLETED charge of a cancelled order
-- becomes REFUNDED (and payment.refunded is published); an order cancelled
-- before it was charged gets a CANCELLED row, which charges nothing and makes
-- a late inventory.reserved a no-op (one payment row per order, ever).
ALTER TABLE payments DROP CONSTRAINT payments_status_check;
ALTER TABLE payments ADD CONSTRAINT payments_status_check
    CHECK (status IN ('COMPLETED', 'FAILED', 'REFUNDED', 'CANCELLED'));
ALTER TABLE payments ADD COLUMN refunded_at timestamptz;
