package stream_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/internal/testenv"
)

// BenchmarkPublishDurable measures what a durable publish costs on a file
// stream that fsyncs every write (sync_interval: always, as the dev stack
// and production run): one message at a time with up to 256 acks pending,
// as the outbox relay publishes, against JetStream's atomic batches
// (Nats-Batch-Id, nats-server 2.12 and later), whose commit stores the
// batch with one fsync and answers once. It reports messages a second and
// the CPU the process (server and client, both in it) spent per message.
//
// On the project's 2-core machine the batches do not pay: nats-server
// stages every atomic batch in a file store of its own, created and deleted
// per batch, which costs more than the fsyncs it saves until batches are
// far larger than the relay's.
//
//	go test ./internal/stream -run '^$' -bench PublishDurable -benchtime 20000x
func BenchmarkPublishDurable(b *testing.B) {
	for _, size := range []int{1, 4, 16, 64} {
		name := "one-by-one"
		if size > 1 {
			name = fmt.Sprintf("atomic-batch=%d", size)
		}
		b.Run(name, func(b *testing.B) {
			n := testenv.StartNATSWith(b, testenv.NATSOptions{SyncAlways: true})
			nc := n.Connect(b)
			js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(256))
			if err != nil {
				b.Fatal(err)
			}
			ctx := b.Context()
			if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
				Name: "PUB", Subjects: []string{"pub.>"}, Storage: jetstream.FileStorage,
				AllowAtomicPublish: true, Duplicates: 2 * time.Minute,
			}); err != nil {
				b.Fatal(err)
			}
			body := []byte(strings.Repeat("x", 400)) // about an order.created with its headers
			before := cpuTime(b)
			b.ResetTimer()
			start := time.Now()
			if size == 1 {
				publishOneByOne(ctx, b, js, body)
			} else {
				publishBatches(b, nc, size, body)
			}
			elapsed := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
			b.ReportMetric(float64((cpuTime(b)-before).Microseconds())/float64(b.N), "cpu-µs/msg")
		})
	}
}

// publishOneByOne publishes b.N messages, each acked on its own, up to 256
// pending.
func publishOneByOne(ctx context.Context, b *testing.B, js jetstream.JetStream, body []byte) {
	for i := range b.N {
		m := nats.NewMsg("pub.one")
		m.Data = body
		m.Header.Set(jetstream.MsgIDHeader, "m"+strconv.Itoa(i))
		if _, err := js.PublishMsgAsync(m); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		b.Fatal(ctx.Err())
	}
}

// publishBatches publishes b.N messages in atomic batches of size, 16
// batches at a time: every message but the last without a reply, the last
// with Nats-Batch-Commit, whose answer acks the batch.
func publishBatches(b *testing.B, nc *nats.Conn, size int, body []byte) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for {
				first := int(next.Add(int64(size))) - size
				if first >= b.N {
					return
				}
				count := min(size, b.N-first)
				id := "b" + strconv.Itoa(first)
				for i := 1; i <= count; i++ {
					m := nats.NewMsg("pub.batch")
					m.Data = body
					m.Header.Set(jetstream.MsgIDHeader, "m"+strconv.Itoa(first+i))
					m.Header.Set("Nats-Batch-Id", id)
					m.Header.Set("Nats-Batch-Sequence", strconv.Itoa(i))
					if i < count {
						if err := nc.PublishMsg(m); err != nil {
							b.Error(err)
							return
						}
						continue
					}
					m.Header.Set("Nats-Batch-Commit", "1")
					reply, err := nc.RequestMsg(m, 10*time.Second)
					if err != nil {
						b.Error(err)
						return
					}
					if strings.Contains(string(reply.Data), `"error"`) {
						b.Errorf("batch %s: %s", id, reply.Data)
						return
					}
				}
			}
		})
	}
	wg.Wait()
}

// cpuTime is the user and system CPU the process has used.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
