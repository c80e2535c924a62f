-- Every hop checks what it is told (docs/DESIGN.md): payment learns each
-- order's total from order.created and its confirmation from
-- order.confirmed (the payment-orders consumer), so that it charges only
-- the total of the order as it was created, and refunds no charge of an
-- order that was confirmed.
CREATE TABLE orders (
  order_id         text PRIMARY KEY,
  total_cents      bigint NOT NULL CHECK (total_cents >= 0),
  created_event_id uuid,                          -- NULL when learnt from order.confirmed first
  confirmed        boolean NOT NULL DEFAULT false,
  recorded_at      timestamptz NOT NULL DEFAULT now()
);
