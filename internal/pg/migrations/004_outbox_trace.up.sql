-- The W3C trace context of the span that wrote each event (docs/DESIGN.md,
-- "Tracing"): the relay publishes the event under a span that is its child,
-- so that a saga stays one trace across a crash between commit and publish.
-- NULL when the producer was not traced; an event without it is valid.
ALTER TABLE outbox ADD COLUMN trace_parent text, ADD COLUMN trace_state text;
