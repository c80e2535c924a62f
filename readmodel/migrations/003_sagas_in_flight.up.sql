-- GET /sagas: the sagas in flight (not terminal yet), oldest first, and those
-- stuck (older than a threshold).

-- When the saga began: when order.created occurred or, while the read model
-- has not seen it, the earliest event it has seen of the order (sagaStart).
-- Existing views take it from their timeline.
ALTER TABLE order_views ADD COLUMN created_at timestamptz;

UPDATE order_views AS v SET created_at = coalesce(
    (SELECT min((s->>'occurred_at')::timestamptz) FROM jsonb_array_elements(v.timeline) AS s
     WHERE s->>'event_type' = 'order.created'),
    (SELECT min((s->>'occurred_at')::timestamptz) FROM jsonb_array_elements(v.timeline) AS s),
    v.last_occurred_at);

ALTER TABLE order_views ALTER COLUMN created_at SET NOT NULL;

-- Only the views in flight: small however long the history, and kept in the
-- order GET /sagas pages through. The projection's upsert maintains it only
-- for rows that are (or were) in flight. The predicate is inFlightSQL's.
CREATE INDEX order_views_in_flight ON order_views (created_at, order_id)
    WHERE status IN ('PENDING', 'RESERVED');
