package stream_test

import (
	"fmt"
	"hash/fnv"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/internal/stream"
	"github.com/jetsaga/jetsaga/internal/testenv"
)

// BenchmarkBacklogByShards measures what the subject layout costs a
// filtered consumer that is behind: the time to read a backlog of ORDERS
// through the two kinds of filter the services use, for subjects per order
// (the old contract) and per type and shard, at several shard counts.
//
// nats-server finds a filtered consumer's next message either by walking
// the block from the consumer's position or, when the block holds fewer
// distinct subjects than messages left to walk, by matching the block's
// subjects against the filter; the second costs in proportion to the
// subjects in the block, on every message. So the shard count sets what a
// consumer pays to catch up (after an outage, or a burst), while a consumer
// that keeps up walks a few messages either way.
//
//	go test ./internal/stream -run '^$' -bench BacklogByShards -benchtime 1x
func BenchmarkBacklogByShards(b *testing.B) {
	const orders = 20_000 // 40,000 messages: ~2 blocks of a stream's default size
	layouts := []struct {
		name   string
		shards uint32 // 0: a subject per order
	}{{"per-order", 0}, {"shards=1024", 1024}, {"shards=256", 256}, {"shards=64", 64}, {"shards=16", 16}}
	filters := map[string][]string{
		// inventory-orders and payment-orders: every type of ORDERS
		"three-types": {"order.created.>", "order.confirmed.>", "order.cancelled.>"},
		// payment-inventory, inventory-payments: one type among others
		"one-type": {"order.cancelled.>"},
		// every type by the stream's own subject, as the read model does
		"stream": {"order.>"},
	}
	for _, l := range layouts {
		b.Run(l.name, func(b *testing.B) {
			n := testenv.StartNATS(b)
			nc := n.Connect(b)
			js, err := jetstream.New(nc)
			if err != nil {
				b.Fatal(err)
			}
			ctx := b.Context()
			if err := stream.Ensure(ctx, js, stream.Config{}, stream.Orders); err != nil {
				b.Fatal(err)
			}
			subject := func(typ, id string) string {
				if l.shards == 0 {
					return typ + "." + id
				}
				h := fnv.New32a()
				h.Write([]byte(id))
				return fmt.Sprintf("%s.%03x", typ, h.Sum32()%l.shards)
			}
			// A saga's ORDERS messages: created, then confirmed (or, one in
			// five, cancelled), interleaved with other sagas as in the stream.
			body := make([]byte, 400)
			var want = map[string]int{}
			for i := range orders {
				id := uuid.Must(uuid.NewV7()).String()
				end := "order.confirmed"
				if i%5 == 0 {
					end = "order.cancelled"
				}
				for _, typ := range []string{"order.created", end} {
					if _, err := js.PublishAsync(subject(typ, id), body); err != nil {
						b.Fatal(err)
					}
					want[typ]++
				}
			}
			select {
			case <-js.PublishAsyncComplete():
			case <-time.After(2 * time.Minute):
				b.Fatal("publishes not acknowledged after 2m")
			}
			for _, name := range []string{"three-types", "one-type", "stream"} {
				expect := 0
				for _, f := range filters[name] {
					if f == "order.>" {
						expect = 2 * orders
						continue
					}
					expect += want[f[:len(f)-2]]
				}
				b.Run(name, func(b *testing.B) {
					for b.Loop() {
						cons, err := js.CreateConsumer(ctx, stream.Orders, jetstream.ConsumerConfig{
							FilterSubjects: filters[name], AckPolicy: jetstream.AckNonePolicy,
							DeliverPolicy: jetstream.DeliverAllPolicy,
						})
						if err != nil {
							b.Fatal(err)
						}
						got := 0
						for got < expect {
							batch, err := cons.FetchNoWait(256)
							if err != nil {
								b.Fatal(err)
							}
							for range batch.Messages() {
								got++
							}
							if err := batch.Error(); err != nil {
								b.Fatal(err)
							}
						}
						if err := js.DeleteConsumer(ctx, stream.Orders, cons.CachedInfo().Name); err != nil {
							b.Fatal(err)
						}
					}
					b.ReportMetric(float64(expect)*float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
				})
			}
		})
	}
}
