-- The order service's write model: one row per order (docs/DESIGN.md, "Saga").
-- The delivery tables outbox and inbox live beside it (internal/pg).

CREATE TABLE orders (
    order_id        text        PRIMARY KEY,
    customer_id     text        NOT NULL,
    items           jsonb       NOT NULL,          -- [{"sku","qty","unit_price_cents"}]
    total_cents     bigint      NOT NULL CHECK (total_cents >= 0),
    status          text        NOT NULL CHECK (status IN ('PENDING','RESERVED','CONFIRMED','CANCELLED')),
    reason          text        NOT NULL DEFAULT '' -- out_of_stock | unknown_sku | payment_failed
                    CHECK (reason IN ('', 'out_of_stock', 'unknown_sku', 'payment_failed', 'timeout')),
    payment_failed  boolean     NOT NULL DEFAULT false,
    version         int         NOT NULL DEFAULT 1 CHECK (version >= 1),
    idempotency_key text        UNIQUE,            -- NULL when no Idempotency-Key header
    request_hash    text        NOT NULL DEFAULT '', -- sha256 of the canonical request body, for the 422 check
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Orders still in flight, oldest first: what `jetsaga check` looks for past
-- its deadline.
CREATE INDEX orders_open_created_at ON orders (created_at) WHERE status IN ('PENDING', 'RESERVED');
