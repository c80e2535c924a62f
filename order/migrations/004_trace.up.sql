-- The W3C trace context of the order's order.created (NULL when untraced):
-- a timeout's order.cancelled, written by the deadline scheduler long after
-- the request, joins the saga's trace with it.
ALTER TABLE orders
    ADD COLUMN trace_parent text,
    ADD COLUMN trace_state  text;
