-- Stock adjustments (docs/DESIGN.md, "Saga" and invariant 2). An operator's
-- PUT /stock/{sku} on an existing SKU is an adjustment: it leaves initial (what
-- the SKU started with) alone, adds its delta to adjusted, and is recorded as
-- a row of stock_adjustments. Invariant 2 then reads
--   initial + adjusted = available + reserved + sold.
-- Rows from before this migration had their adjustments folded into initial:
-- adjusted starts at 0 for them, which keeps the invariant.
ALTER TABLE stock ADD COLUMN adjusted int NOT NULL DEFAULT 0;

CREATE TABLE stock_adjustments (
  id               bigserial PRIMARY KEY,
  sku              text NOT NULL REFERENCES stock(sku),
  delta            int NOT NULL,            -- available_after - available_before
  available_before int NOT NULL,
  available_after  int NOT NULL,
  adjusted_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX stock_adjustments_sku ON stock_adjustments (sku, id);
