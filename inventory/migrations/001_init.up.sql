-- The inventory service's own tables (docs/DESIGN.md, "Saga"). The delivery tables
-- outbox and inbox are created by internal/pg before this runs; search_path is
-- the service schema, so names are unqualified.

-- Stock per SKU. Invariant (docs/DESIGN.md, 2): initial = available + reserved + sold
-- (002 adds adjusted: initial + adjusted = available + reserved + sold).
CREATE TABLE stock (
  sku        text PRIMARY KEY,
  available  int NOT NULL CHECK (available >= 0),
  reserved   int NOT NULL DEFAULT 0 CHECK (reserved >= 0),   -- held by reservations in status HELD
  sold       int NOT NULL DEFAULT 0 CHECK (sold >= 0),       -- committed to confirmed orders
  initial    int NOT NULL,   -- what the SKU started with (seed, or the PUT that created it)
  updated_at timestamptz NOT NULL DEFAULT now()
);

-- One reservation decision per order (the business key).
CREATE TABLE reservations (
  order_id   text PRIMARY KEY,
  status     text NOT NULL CHECK (status IN ('HELD','COMMITTED','RELEASED','REJECTED')),
  reason     text NOT NULL DEFAULT '',    -- for REJECTED: out_of_stock | unknown_sku
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);

-- What a reservation holds, one row per SKU (duplicate lines of an order
-- merged). Written only for reservations that were HELD; a REJECTED one holds
-- nothing.
CREATE TABLE reservation_items (
  order_id text NOT NULL REFERENCES reservations(order_id),
  sku      text NOT NULL,
  qty      int NOT NULL CHECK (qty > 0),
  PRIMARY KEY (order_id, sku)
);
