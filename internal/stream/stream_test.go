package stream_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/internal/event"
	"github.com/jetsaga/jetsaga/internal/stream"
	"github.com/jetsaga/jetsaga/internal/testenv"
)

// Every instance provisions at start: running Ensure twice, and with changed
// options, must succeed and converge.
func TestEnsureIsIdempotent(t *testing.T) {
	t.Parallel()
	n := testenv.StartNATS(t)
	js := testenv.JetStream(t, n.Connect(t))
	ctx := t.Context()
	for range 2 {
		if err := stream.Ensure(ctx, js, stream.Config{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := stream.Ensure(ctx, js, stream.Config{Duplicates: time.Minute, MaxAge: time.Hour, MaxMsgs: 1_000_000}); err != nil {
		t.Fatal(err)
	}
	for _, name := range stream.Names() {
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		cfg := s.CachedInfo().Config
		wantRetention := jetstream.LimitsPolicy
		if name == stream.Replay {
			wantRetention = jetstream.WorkQueuePolicy
		}
		if cfg.Duplicates != time.Minute || cfg.MaxAge != time.Hour || cfg.Storage != jetstream.FileStorage ||
			cfg.Retention != wantRetention || cfg.Subjects[0] != stream.Subject(name) {
			t.Fatalf("stream %s config = %+v", name, cfg)
		}
		wantMaxMsgs := int64(1_000_000)
		if name == stream.DLQ || name == stream.Replay {
			wantMaxMsgs = -1
		}
		if cfg.MaxMsgs != wantMaxMsgs {
			t.Errorf("stream %s max msgs = %d, want %d", name, cfg.MaxMsgs, wantMaxMsgs)
		}
		if !strings.HasPrefix(cfg.Description, "jetsaga: ") {
			t.Errorf("stream %s has no description (nats stream info shows it): %q", name, cfg.Description)
		}
	}

	cc := stream.ConsumerConfig{
		Stream: stream.Orders, Durable: "inventory-orders", FilterSubjects: []string{"order.created.>"},
		MaxDeliver: 5, BackOff: []time.Duration{time.Second, 2 * time.Second}, MaxAckPending: 64,
	}
	for range 2 {
		if _, err := stream.EnsureConsumer(ctx, js, cc); err != nil {
			t.Fatal(err)
		}
	}
	c, err := js.Consumer(ctx, stream.Orders, "inventory-orders")
	if err != nil {
		t.Fatal(err)
	}
	got := c.CachedInfo().Config
	if got.AckPolicy != jetstream.AckExplicitPolicy || got.MaxDeliver != 5 || got.MaxAckPending != 64 ||
		got.AckWait != time.Second || len(got.BackOff) != 2 || got.FilterSubjects[0] != "order.created.>" {
		t.Fatalf("consumer config = %+v", got)
	}
}

func TestConsumerConfigValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		cfg     stream.ConsumerConfig
		wantErr bool
	}{
		{"ok", stream.ConsumerConfig{Stream: "ORDERS", Durable: "d", FilterSubjects: []string{"order.>"}}, false},
		{"no stream", stream.ConsumerConfig{Durable: "d", FilterSubjects: []string{"order.>"}}, true},
		{"no durable", stream.ConsumerConfig{Stream: "ORDERS", FilterSubjects: []string{"order.>"}}, true},
		{"no filter", stream.ConsumerConfig{Stream: "ORDERS", Durable: "d"}, true},
		{"backoff longer than max deliver", stream.ConsumerConfig{Stream: "ORDERS", Durable: "d", FilterSubjects: []string{"order.>"},
			MaxDeliver: 1, BackOff: []time.Duration{time.Second, time.Second}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.cfg.Validate(); (err != nil) != tc.wantErr {
				t.Fatalf("Validate() = %v, wantErr %v", err, tc.wantErr)
			}
		})
	}
}

// The event streams refuse a message larger than an event can be; DLQ takes
// one up to the server's max_payload.
func TestEventStreamsRefuseOversizedMessages(t *testing.T) {
	t.Parallel()
	n := testenv.StartNATS(t)
	js := testenv.JetStream(t, n.Connect(t))
	ctx := t.Context()
	if err := stream.Ensure(ctx, js, stream.Config{}); err != nil {
		t.Fatal(err)
	}
	big := make([]byte, stream.MaxEventSize+1)
	if _, err := js.Publish(ctx, "order.created.o-big", big); err == nil {
		t.Fatal("ORDERS stored a message larger than MaxEventSize")
	}
	if _, err := js.Publish(ctx, "order.created.o-ok", big[:stream.MaxEventSize-100]); err != nil {
		t.Fatalf("ORDERS refused a message under the limit: %v", err)
	}
	if _, err := js.Publish(ctx, "dlq.test.ORDERS.1", big); err != nil {
		t.Fatalf("DLQ refused a dead letter larger than an event: %v", err)
	}
}

// However many orders, a stream holds at most its types × event.Shards
// subjects: 4 × event.Shards orders' order.created, four per shard on
// average, are on no more than event.Shards subjects, one per shard of their
// ids. (With a subject per order there was one per order, and nats-server's
// per-subject state grew with every order.)
func TestSubjectsAreBoundedByShards(t *testing.T) {
	t.Parallel()
	n := testenv.StartNATS(t)
	js := testenv.JetStream(t, n.Connect(t))
	ctx := t.Context()
	if err := stream.Ensure(ctx, js, stream.Config{}); err != nil {
		t.Fatal(err)
	}
	const orders = 4 * event.Shards
	shards := map[string]bool{}
	for i := range orders {
		id := fmt.Sprintf("0190f5c2-7d1e-7%03x-9c4d-%012x", i%4096, i*7919)
		e, err := event.New(event.OrderCreated, id, "", event.OrderCreatedPayload{
			OrderID: id, CustomerID: "c1", Items: []event.Item{{SKU: "sku-1", Qty: 1, UnitPriceCents: 100}}, TotalCents: 100,
		}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := js.PublishMsgAsync(e.Msg()); err != nil {
			t.Fatal(err)
		}
		shards[event.Shard(id)] = true
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		t.Fatal("publishes not acked within a minute")
	}
	s, err := js.Stream(ctx, stream.Orders)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st := info.State; st.Msgs != orders || st.NumSubjects != uint64(len(shards)) || st.NumSubjects > event.Shards {
		t.Errorf("ORDERS: %d messages on %d subjects, want %d on the %d shards of their ids (at most %d)",
			st.Msgs, st.NumSubjects, orders, len(shards), event.Shards)
	}
}
