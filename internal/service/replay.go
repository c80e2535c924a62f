package service

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/jetsaga/jetsaga/internal/consume"
	"github.com/jetsaga/jetsaga/internal/event"
	"github.com/jetsaga/jetsaga/internal/fault"
	"github.com/jetsaga/jetsaga/internal/outbox"
	"github.com/jetsaga/jetsaga/internal/stream"
)

// replayLoop provisions the service's replay consumer (<service>-replay on
// REPLAY, filtered replay.<service>.>) and returns its loop, which hands
// each dead letter replayed by jetsaga dlq replay to the Handle of the
// consumer that dead-lettered it. The loop wakes the outbox relay unless
// every consumer of the service is Silent.
func replayLoop(ctx context.Context, log *zap.Logger, pool *pgxpool.Pool, js jetstream.JetStream, cfg Config,
	part Participant, metrics *consume.Metrics, relay *outbox.Relay, inj *fault.Injector) (*consume.Loop, error) {
	consumers := part.Consumers()
	durable := consume.ReplayDurable(cfg.Name)
	cons, err := retry(ctx, log, "provision consumer "+durable, func() (jetstream.Consumer, error) {
		return stream.EnsureConsumer(ctx, js, stream.ConsumerConfig{
			Stream: stream.Replay, Durable: durable, FilterSubjects: []string{consume.ReplayFilter(cfg.Name)},
			Description: cfg.Name + " service: replayed dead letters", AckWait: cfg.AckWait, MaxDeliver: -1,
		})
	})
	if err != nil {
		return nil, err
	}
	var prepare func(ctx context.Context, tx pgx.Tx, events []event.Event) error
	if p, ok := part.(Preparer); ok {
		prepare = p.PrepareBatch
	}
	routes := make(map[string]consume.Route, len(consumers))
	silent := true
	for _, c := range consumers {
		routes[c.Durable] = consume.Route{Handle: c.Handle, Prepare: prepare}
		silent = silent && c.Silent
	}
	lc := loopConfig(cfg, log, metrics, silent, relay, inj)
	return retry(ctx, log, "start consumer "+durable, func() (*consume.Loop, error) {
		return consume.NewReplay(ctx, pool, js, cons, routes, lc)
	})
}
