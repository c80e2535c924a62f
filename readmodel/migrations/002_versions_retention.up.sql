-- Versions and retention (docs/DESIGN.md, "Read model: versions, retention,
-- rebuild").

-- Where each event was read: its stream and its sequence there ('' and 0 when
-- unknown, e.g. a dead letter replayed from another stream).
ALTER TABLE events
    ADD COLUMN stream text   NOT NULL DEFAULT '',
    ADD COLUMN seq    bigint NOT NULL DEFAULT 0;

-- A view's version: the sequences, per saga stream, of every message
-- projected into it (ascending). A view is only ever replaced by one that
-- has seen all of them, and an event whose sequence is here is in the view.
-- pruned: the order's events were deleted (terminal and older than
-- --event-retention); its view stands for them, and a late event of the
-- order is folded into it instead of being stored.
ALTER TABLE order_views
    ADD COLUMN orders_seqs    bigint[] NOT NULL DEFAULT '{}',
    ADD COLUMN inventory_seqs bigint[] NOT NULL DEFAULT '{}',
    ADD COLUMN payments_seqs  bigint[] NOT NULL DEFAULT '{}',
    ADD COLUMN pruned         boolean  NOT NULL DEFAULT false;

-- What the pruner looks for: terminal views whose events are still kept, the
-- oldest first.
CREATE INDEX order_views_prunable ON order_views (last_occurred_at)
    WHERE NOT pruned AND status IN ('CONFIRMED', 'CANCELLED');
