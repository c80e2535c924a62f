package service

import (
	"context"

	"github.com/jetsaga/jetsaga/internal/consume"
	"github.com/jetsaga/jetsaga/internal/event"
	"github.com/jetsaga/jetsaga/internal/fault"
)

func target(e event.Event) fault.Target {
	return fault.Target{OrderID: e.OrderID, EventID: e.ID, EventType: string(e.Type)}
}

// consumeFaults puts the injector into the consumer loop's windows.
func consumeFaults(in *fault.Injector) consume.Faults {
	return consume.Faults{
		BeforeHandle: func(ctx context.Context, e event.Event) error { return in.BeforeHandle(ctx, target(e)) },
		BeforeCommit: func(_ context.Context, e event.Event) error { in.BeforeCommit(target(e)); return nil },
		AfterCommit: func(_ context.Context, e event.Event) consume.AckAction {
			if in.AfterCommit(target(e)) {
				return consume.Redeliver
			}
			return consume.Ack
		},
	}
}

// relayFaults puts the injector into the outbox relay's windows.
func relayFaults(in *fault.Injector) (beforeDelete func(context.Context, []event.Event) error, duplicate func(event.Event) bool) {
	beforeDelete = func(_ context.Context, published []event.Event) error {
		if len(published) > 0 {
			in.AfterPublish(target(published[0]))
		}
		return nil
	}
	duplicate = func(e event.Event) bool { return in.Duplicate(target(e)) }
	return beforeDelete, duplicate
}
