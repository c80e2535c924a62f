package outbox_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jetsaga/jetsaga/internal/event"
	"github.com/jetsaga/jetsaga/internal/outbox"
	"github.com/jetsaga/jetsaga/internal/stream"
	"github.com/jetsaga/jetsaga/internal/testenv"
)

// BenchmarkRelay measures the relay: events committed to the outbox (not
// timed), then published to JetStream with a wait for every ack and deleted
// (timed). Sub-benchmarks compare JetStream's default fsync policy with
// sync_interval: always, which the dev stack and production use, and batch
// sizes.
//
//	go test ./internal/outbox -run '^$' -bench Relay -benchtime 5000x
func BenchmarkRelay(b *testing.B) {
	for _, syncAlways := range []bool{false, true} {
		for _, batch := range []int{16, 256} {
			b.Run(fmt.Sprintf("sync_always=%v/batch=%d", syncAlways, batch), func(b *testing.B) {
				n := testenv.StartNATSWith(b, testenv.NATSOptions{SyncAlways: syncAlways})
				js := testenv.JetStream(b, n.Connect(b))
				ctx := context.Background()
				if err := stream.Ensure(ctx, js, stream.Config{}); err != nil {
					b.Fatal(err)
				}
				pool := testenv.Pool(b, "bench", nil)
				tx, err := pool.Begin(ctx)
				if err != nil {
					b.Fatal(err)
				}
				for i := range b.N {
					id := fmt.Sprintf("o-%d", i)
					e, err := event.New(event.OrderConfirmed, id, "01a20c54-d7dd-7daf-87bd-d95b3a705603",
						&event.OrderConfirmedPayload{OrderID: id, TotalCents: 100}, time.Now())
					if err != nil {
						b.Fatal(err)
					}
					if err := outbox.Add(ctx, tx, e); err != nil {
						b.Fatal(err)
					}
				}
				if err := tx.Commit(ctx); err != nil {
					b.Fatal(err)
				}
				r, err := outbox.NewRelay(pool, js, outbox.RelayConfig{Batch: batch})
				if err != nil {
					b.Fatal(err)
				}
				b.ResetTimer()
				start := time.Now()
				got, err := r.Flush(ctx)
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if got != b.N {
					b.Fatalf("published %d, want %d", got, b.N)
				}
				b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
			})
		}
	}
}
