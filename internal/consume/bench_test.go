package consume_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/jetsaga/jetsaga/internal/consume"
	"github.com/jetsaga/jetsaga/internal/event"
	"github.com/jetsaga/jetsaga/internal/stream"
	"github.com/jetsaga/jetsaga/internal/testenv"
)

// BenchmarkLoop measures the idempotent consumer loop: b.N events waiting in
// the stream (published before the timer), handled each in its own
// transaction (inbox insert + a one-row upsert) and acked after the commit.
// Sub-benchmarks vary the workers per consumer.
//
//	go test ./internal/consume -run '^$' -bench Loop -benchtime 3000x
func BenchmarkLoop(b *testing.B) {
	for _, workers := range []int{1, 4} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			n := testenv.StartNATS(b)
			js := testenv.JetStream(b, n.Connect(b))
			ctx := context.Background()
			if err := stream.Ensure(ctx, js, stream.Config{}); err != nil {
				b.Fatal(err)
			}
			cons, err := stream.EnsureConsumer(ctx, js, stream.ConsumerConfig{
				Stream: stream.Orders, Durable: "bench", FilterSubjects: []string{"order.>"},
			})
			if err != nil {
				b.Fatal(err)
			}
			pool := testenv.Pool(b, "bench", effectsMigrations)
			for i := range b.N {
				id := fmt.Sprintf("o-%d", i)
				e, err := event.New(event.OrderConfirmed, id, "01a20c54-d7dd-7daf-87bd-d95b3a705603",
					&event.OrderConfirmedPayload{OrderID: id, TotalCents: 100}, time.Now())
				if err != nil {
					b.Fatal(err)
				}
				if _, err := js.PublishMsgAsync(e.Msg()); err != nil {
					b.Fatal(err)
				}
			}
			<-js.PublishAsyncComplete()

			done := make(chan struct{})
			var handled int
			h := func(ctx context.Context, tx pgx.Tx, e event.Event) error { return countEffect(ctx, tx, e) }
			l, err := consume.New(ctx, pool, js, cons, h, consume.Config{Service: "bench", Workers: workers, Batch: 64})
			if err != nil {
				b.Fatal(err)
			}
			runCtx, cancel := context.WithCancel(ctx)
			b.ResetTimer()
			start := time.Now()
			go func() { _ = l.Run(runCtx); close(done) }()
			for handled < b.N {
				if err := pool.QueryRow(ctx, `SELECT count(*) FROM inbox`).Scan(&handled); err != nil {
					b.Fatal(err)
				}
				if handled < b.N {
					time.Sleep(5 * time.Millisecond) // poll interval while measuring
				}
			}
			elapsed := time.Since(start)
			b.StopTimer()
			cancel()
			<-done
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
		})
	}
}
