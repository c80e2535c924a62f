-- The readmodel's own tables (schema "readmodel"). The delivery tables outbox
-- and inbox are created by the runtime before this file runs.

-- Every distinct event the read model has seen, kept so that an order's view
-- can be recomputed from all of its events whatever order they arrived in.
CREATE TABLE events (
    event_id     uuid        PRIMARY KEY,
    order_id     text        NOT NULL,
    event_type   text        NOT NULL,
    causation_id text        NOT NULL DEFAULT '',
    occurred_at  timestamptz NOT NULL,   -- when the producing transaction committed
    projected_at timestamptz NOT NULL,   -- when the read model first projected it
    body         jsonb       NOT NULL
);

CREATE INDEX events_order ON events (order_id);

-- One row per order: the view computed by Project from the order's events.
-- `jetsaga check` reads status and reason.
CREATE TABLE order_views (
    order_id         text             PRIMARY KEY,
    customer_id      text             NOT NULL DEFAULT '',   -- '' until order.created is seen
    items            jsonb            NOT NULL DEFAULT '[]', -- [{"sku","qty","unit_price_cents"}]
    total_cents      bigint           NOT NULL DEFAULT 0,
    status           text             NOT NULL CHECK (status IN ('PENDING', 'RESERVED', 'CONFIRMED', 'CANCELLED')),
    reason           text             NOT NULL DEFAULT '',
    version          int              NOT NULL CHECK (version >= 0), -- distinct saga events projected
    timeline         jsonb            NOT NULL,              -- [{"event_id","event_type","occurred_at","projected_at","lag_ms"}], causal order
    last_occurred_at timestamptz      NOT NULL,
    updated_at       timestamptz      NOT NULL,
    lag_ms           double precision NOT NULL               -- projected_at - occurred_at of the latest event projected
);

CREATE INDEX order_views_status ON order_views (status, order_id);
