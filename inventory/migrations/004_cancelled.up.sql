-- Saga deadlines (docs/DESIGN.md, "Deadlines"): an order.cancelled that
-- arrives before the order's order.created is recorded as a CANCELLED
-- reservation decision, which holds nothing, so that the late order.created
-- reserves nothing.
ALTER TABLE reservations DROP CONSTRAINT reservations_status_check;
ALTER TABLE reservations ADD CONSTRAINT reservations_status_check
    CHECK (status IN ('HELD', 'COMMITTED', 'RELEASED', 'REJECTED', 'CANCELLED'));
