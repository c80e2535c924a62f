-- Every hop checks what it is told (docs/DESIGN.md): a reservation keeps
-- what the events that follow it must agree with. created_event_id is the
-- order.created it was decided on (a timeout's order.cancelled names it as
-- its cause); reserved_event_id the inventory.reserved it published (the
-- cause of a genuine payment.failed); total_cents the order's total (the
-- amount of payment.failed and order.confirmed). NULL for reservations
-- decided before this migration: those checks are skipped for them.
ALTER TABLE reservations
    ADD COLUMN created_event_id  uuid,
    ADD COLUMN reserved_event_id uuid,
    ADD COLUMN total_cents       bigint;
