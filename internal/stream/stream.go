// Package stream provisions jetsaga's JetStream streams and durable pull
// consumers. Every function here is idempotent (create-or-update), so every
// instance of every service runs it at start.
package stream

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Stream names and the subjects they hold (docs/DESIGN.md, "Event contract").
const (
	Orders    = "ORDERS"
	Inventory = "INVENTORY"
	Payments  = "PAYMENTS"
	DLQ       = "DLQ"
	Replay    = "REPLAY"
)

// Subjects maps each stream to its subject filter.
var subjects = map[string]string{
	Orders:    "order.>",
	Inventory: "inventory.>",
	Payments:  "payment.>",
	DLQ:       "dlq.>",
	Replay:    "replay.>",
}

// descriptions say what each stream holds (nats stream info shows them).
var descriptions = map[string]string{
	Orders:    "jetsaga: events of the order service (order.created, order.confirmed, order.cancelled), subject <type>.<order_id>",
	Inventory: "jetsaga: events of the inventory service (inventory.reserved, inventory.rejected, inventory.released), subject <type>.<order_id>",
	Payments:  "jetsaga: events of the payment service (payment.completed, payment.failed), subject <type>.<order_id>",
	DLQ:       "jetsaga: dead letters: messages a service could not handle, with their original headers and the error",
	Replay:    "jetsaga: dead letters replayed by jetsaga dlq replay, each for the one consumer that dead-lettered it, subject replay.<service>.<consumer>.<dlq seq>",
}

// Names lists the streams in a stable order.
func Names() []string { return []string{Orders, Inventory, Payments, DLQ, Replay} }

// Subject returns the subject filter of a stream ("order.>" for ORDERS).
func Subject(name string) string { return subjects[name] }

// MaxEventSize is the event streams' max_msg_size: the most an event's
// headers and body may hold together. An event is a small JSON document (the
// order API takes at most 64 KiB); a larger message is refused by the stream
// rather than stored for every consumer to choke on. JetStream has no limit
// on a subject's length: the server's max_control_line bounds it, and the
// consumers refuse a subject longer than the contract's.
const MaxEventSize = 256 << 10

// Config holds the stream options that differ between a laptop and a cluster.
type Config struct {
	Replicas int           // 1 on one machine, 3 in a cluster; default 1
	MaxAge   time.Duration // 0 keeps history forever (limits retention)
	// MaxMsgs bounds the messages each event stream (ORDERS, INVENTORY,
	// PAYMENTS) keeps, oldest dropped first; 0 keeps them all. DLQ and
	// REPLAY are never bounded by count: a dead letter leaves only when it
	// is replayed or purged.
	MaxMsgs    int64
	Duplicates time.Duration // dedup window on Nats-Msg-Id; default 2m
	// MaxMsgSize is the event streams' max_msg_size; default MaxEventSize,
	// -1 for none (the server's max_payload). DLQ and REPLAY take up to the
	// server's max_payload: a dead letter is cut to fit it, and a replay is
	// a dead letter's event with a few more headers.
	MaxMsgSize int32
}

func (c Config) withDefaults() Config {
	c.Replicas = cmp.Or(c.Replicas, 1)
	c.Duplicates = cmp.Or(c.Duplicates, 2*time.Minute)
	return c
}

// StreamConfig returns the JetStream configuration of the named stream.
func StreamConfig(name string, cfg Config) (jetstream.StreamConfig, error) {
	subj, ok := subjects[name]
	if !ok {
		return jetstream.StreamConfig{}, fmt.Errorf("unknown stream %q", name)
	}
	cfg = cfg.withDefaults()
	maxMsg := cmp.Or(cfg.MaxMsgSize, MaxEventSize)
	if name == DLQ || name == Replay || maxMsg < 0 {
		maxMsg = -1
	}
	// REPLAY is a work queue: a replay is removed once the consumer it is
	// for acked (or dead-lettered) it; history stays in the event streams.
	retention := jetstream.LimitsPolicy
	if name == Replay {
		retention = jetstream.WorkQueuePolicy
	}
	sc := jetstream.StreamConfig{
		Name:       name,
		Subjects:   []string{subj},
		Retention:  retention,
		Storage:    jetstream.FileStorage,
		Discard:    jetstream.DiscardOld,
		Replicas:   cfg.Replicas,
		MaxAge:     cfg.MaxAge,
		Duplicates: cfg.Duplicates,
		MaxMsgSize: maxMsg,
	}
	if name != DLQ && name != Replay {
		if cfg.MaxMsgs > 0 {
			sc.MaxMsgs = cfg.MaxMsgs
		}
		// The outbox relays publish large batches of events as atomic
		// batches: one fsync and one ack for the batch
		// (internal/outbox, RelayConfig.AtomicMin). A server older than
		// 2.12 ignores the setting, and the relays then publish one by one.
		sc.AllowAtomicPublish = true
	}
	sc.Description = descriptions[name]
	return sc, nil
}

// Ensure creates or updates the named streams (all of Names when names is
// empty).
func Ensure(ctx context.Context, js jetstream.JetStream, cfg Config, names ...string) error {
	if len(names) == 0 {
		names = Names()
	}
	for _, name := range names {
		sc, err := StreamConfig(name, cfg)
		if err != nil {
			return err
		}
		if _, err := js.CreateOrUpdateStream(ctx, sc); err != nil {
			return fmt.Errorf("ensure stream %s: %w", name, err)
		}
	}
	return nil
}

// ConsumerConfig describes one durable pull consumer of a service.
type ConsumerConfig struct {
	Stream         string          // stream to consume
	Durable        string          // durable name, e.g. "inventory-orders"
	FilterSubjects []string        // e.g. "order.created.>"
	AckWait        time.Duration   // default 30s; overridden by BackOff[0] when BackOff is set
	MaxDeliver     int             // default 10; -1: no limit (the consumer loop dead-letters instead)
	BackOff        []time.Duration // redelivery delays after ack timeouts; optional
	MaxAckPending  int             // default 1000
	Description    string
}

// Defaults for consumers.
const (
	DefaultAckWait       = 30 * time.Second
	DefaultMaxDeliver    = 10
	DefaultMaxAckPending = 1000
)

func (c ConsumerConfig) withDefaults() ConsumerConfig {
	c.AckWait = cmp.Or(c.AckWait, DefaultAckWait)
	c.MaxDeliver = cmp.Or(c.MaxDeliver, DefaultMaxDeliver)
	c.MaxAckPending = cmp.Or(c.MaxAckPending, DefaultMaxAckPending)
	if len(c.BackOff) > 0 {
		c.AckWait = c.BackOff[0]
	}
	return c
}

// Validate reports a consumer configuration that JetStream would reject or
// that makes no sense for a saga participant.
func (c ConsumerConfig) Validate() error {
	switch {
	case c.Stream == "":
		return errors.New("consumer: stream is required")
	case c.Durable == "":
		return errors.New("consumer: durable name is required")
	case len(c.FilterSubjects) == 0:
		return errors.New("consumer: at least one filter subject is required")
	case len(c.BackOff) > 0 && c.MaxDeliver > 0 && len(c.BackOff) > c.MaxDeliver:
		return fmt.Errorf("consumer %s: %d backoff steps exceed max deliver %d", c.Durable, len(c.BackOff), c.MaxDeliver)
	}
	return nil
}

// JetStream returns the JetStream form of c, defaults filled in.
func (c ConsumerConfig) JetStream() jetstream.ConsumerConfig {
	c = c.withDefaults()
	return jetstream.ConsumerConfig{
		Durable:        c.Durable,
		Description:    c.Description,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        c.AckWait,
		MaxDeliver:     c.MaxDeliver,
		BackOff:        c.BackOff,
		MaxAckPending:  c.MaxAckPending,
		FilterSubjects: c.FilterSubjects,
		ReplayPolicy:   jetstream.ReplayInstantPolicy,
	}
}

// EnsureConsumer creates or updates a durable pull consumer and returns it.
func EnsureConsumer(ctx context.Context, js jetstream.JetStream, c ConsumerConfig) (jetstream.Consumer, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, c.Stream, c.JetStream())
	if err != nil {
		return nil, fmt.Errorf("ensure consumer %s on %s: %w", c.Durable, c.Stream, err)
	}
	return cons, nil
}
