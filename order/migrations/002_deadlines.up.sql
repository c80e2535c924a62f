-- Saga deadlines (docs/DESIGN.md, "Deadlines"). Every order gets a deadline
-- when it is placed (created_at + --saga-deadline; NULL when deadlines are
-- off); the order service's scheduler cancels a PENDING or RESERVED order
-- past it with reason timeout. created_event_id is the id of the order's
-- order.created: a timeout's order.cancelled names it as its cause.
ALTER TABLE orders
    ADD COLUMN deadline         timestamptz,
    ADD COLUMN created_event_id uuid;

-- Orders placed before this migration and still open get the default
-- deadline, so that they too end.
UPDATE orders SET deadline = created_at + interval '30 seconds'
WHERE status IN ('PENDING', 'RESERVED');

-- What the scheduler looks at: open orders by deadline. Small (only orders
-- in flight), and a pass that finds nothing due reads one index page.
CREATE INDEX orders_open_deadline ON orders (deadline)
    WHERE status IN ('PENDING', 'RESERVED') AND deadline IS NOT NULL;
