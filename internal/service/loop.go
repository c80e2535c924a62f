package service

import (
	"cmp"
	"context"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/jetsaga/jetsaga/internal/consume"
	"github.com/jetsaga/jetsaga/internal/fault"
	"github.com/jetsaga/jetsaga/internal/outbox"
	"github.com/jetsaga/jetsaga/internal/stream"
)

// consumerLoop provisions every durable consumer of part and returns one
// loop over all of them (consume.NewSources): a batch holds what has
// arrived from any of them and is applied in one transaction, by the
// participant's ApplyBatch when it is a BatchApplier, or else by each
// consumer's HandleBatch in the order Consumers lists them. The loop wakes
// the outbox relay unless every consumer is Silent.
func consumerLoop(ctx context.Context, log *zap.Logger, pool *pgxpool.Pool, js jetstream.JetStream, cfg Config,
	part Participant, metrics *consume.Metrics, relay *outbox.Relay, inj *fault.Injector) (*consume.Loop, error) {
	consumers := part.Consumers()
	sources := make([]consume.Source, 0, len(consumers))
	silent := true
	for _, c := range consumers {
		cons, err := retry(ctx, log, "provision consumer "+c.Durable, func() (jetstream.Consumer, error) {
			return stream.EnsureConsumer(ctx, js, stream.ConsumerConfig{
				Stream: c.Stream, Durable: c.Durable, FilterSubjects: c.Subjects,
				Description: cfg.Name + " service", AckWait: cfg.AckWait,
				// JetStream itself never gives up on a message: past its
				// MaxDeliver it would stop delivering without a trace (and
				// crashes burn deliveries too). The loop dead-letters a
				// failing message after cfg.MaxDeliver deliveries instead.
				MaxDeliver: -1,
			})
		})
		if err != nil {
			return nil, err
		}
		sources = append(sources, consume.Source{Consumer: cons, Name: c.Durable, Handler: c.Handle, BatchHandler: c.HandleBatch})
		silent = silent && c.Silent
	}
	lc := loopConfig(cfg, log, metrics, silent, relay, inj)
	lc.Consumer, lc.Workers, lc.Batch = cfg.Name, cfg.Workers, cfg.Batch
	if a, ok := part.(BatchApplier); ok {
		lc.BatchHandler = a.ApplyBatch
	}
	if p, ok := part.(Preparer); ok {
		lc.Prepare = p.PrepareBatch
	}
	return retry(ctx, log, "start the consumers' loop", func() (*consume.Loop, error) {
		return consume.NewSources(ctx, pool, js, sources, lc)
	})
}

// loopConfig is what the service's loops (its consumers', its replays')
// share: limits, logs, metrics, tracing, failure injection, and, unless
// every consumer is Silent, the outbox handoff. Hand publishes what a batch
// wrote (and wakes the relay when it cannot take it): no other wake is
// needed.
func loopConfig(cfg Config, log *zap.Logger, metrics *consume.Metrics, silent bool, relay *outbox.Relay, inj *fault.Injector) consume.Config {
	lc := consume.Config{
		Service: cfg.Name, MaxDeliver: cmp.Or(cfg.MaxDeliver, stream.DefaultMaxDeliver), RetryMax: cfg.RetryMax, Logger: log, Metrics: metrics,
		TracerProvider: cfg.TracerProvider,
	}
	if !silent {
		lc.Handoff = relay.Hand
	}
	if inj != nil {
		lc.Faults = consumeFaults(inj)
	}
	return lc
}
