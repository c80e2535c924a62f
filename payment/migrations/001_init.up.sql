-- The payment service's own table. The delivery tables outbox and inbox are
-- created by internal/pg before this runs; search_path is the service schema.

-- One payment per order, ever (the business key): COMPLETED or FAILED.
CREATE TABLE payments (
  order_id     text PRIMARY KEY,
  payment_id   text NOT NULL UNIQUE,      -- UUIDv7
  amount_cents bigint NOT NULL CHECK (amount_cents >= 0),
  status       text NOT NULL CHECK (status IN ('COMPLETED','FAILED')),
  reason       text NOT NULL DEFAULT '',  -- declined_over_limit | declined_random
  created_at   timestamptz NOT NULL DEFAULT now()
);
