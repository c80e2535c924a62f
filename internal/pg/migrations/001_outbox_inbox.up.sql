-- The delivery tables every service schema holds (docs/DESIGN.md, "Delivery").

-- Events written in the same transaction as the state change that caused them,
-- published by the relay and deleted once JetStream acked them.
CREATE TABLE outbox (
    seq          bigserial   PRIMARY KEY,
    event_id     uuid        NOT NULL UNIQUE,
    event_type   text        NOT NULL,
    order_id     text        NOT NULL,
    causation_id text        NOT NULL DEFAULT '',
    occurred_at  timestamptz NOT NULL,
    body         bytea       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- One row per (consumer, event) handled: the idempotency record. A conflict on
-- insert means the event was handled already.
CREATE TABLE inbox (
    consumer   text        NOT NULL,
    event_id   uuid        NOT NULL,
    event_type text        NOT NULL,
    order_id   text        NOT NULL,
    handled_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);

CREATE INDEX inbox_handled_at ON inbox (handled_at);
