package consume_test

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/jetsaga/jetsaga/internal/consume"
	"github.com/jetsaga/jetsaga/internal/event"
	"github.com/jetsaga/jetsaga/internal/stream"
	"github.com/jetsaga/jetsaga/internal/testenv"
)

// mustSeq returns the stream sequence a dead letter names.
func mustSeq(t *testing.T, m *jetstream.RawStreamMsg) uint64 {
	t.Helper()
	seq, err := strconv.ParseUint(m.Header.Get(consume.HeaderDLQStreamSeq), 10, 64)
	if err != nil {
		t.Fatalf("dead letter %s: %s: %v", m.Subject, consume.HeaderDLQStreamSeq, err)
	}
	return seq
}

// deadLetterRow is what the dead_letters table says about one message.
type deadLetterRow struct {
	subject   string
	published bool
	bodySize  int64
	bodySHA   string
	pubErr    string
}

func deadLetterRows(t *testing.T, b bundle) []deadLetterRow {
	t.Helper()
	rows, err := b.pool.Query(t.Context(), `
		SELECT subject, published, body_size, body_sha256, publish_error FROM dead_letters ORDER BY stream_seq`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []deadLetterRow
	for rows.Next() {
		var r deadLetterRow
		if err := rows.Scan(&r.subject, &r.published, &r.bodySize, &r.bodySHA, &r.pubErr); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// A message whose subject nearly fills nats-server's 4,096-byte control line
// is dead-lettered on a short subject: the dead letter's publish (a request
// with a reply inbox) must not exceed the control line, or the server closes
// the consumer's connection for good.
func TestLongSubjectIsDeadLetteredAndTheConnectionStays(t *testing.T) {
	t.Parallel()
	b := setup(t, options{})
	run(t, b, countEffect, consume.Config{})

	long := "order.created." + strings.Repeat("L", 4040)
	msg := nats.NewMsg(long)
	msg.Header.Set(event.HeaderMsgID, "01a21955-0000-7000-8000-000000000001")
	msg.Header.Set("X-Junk", strings.Repeat("h", 5000))
	msg.Data = []byte("x")
	if err := b.nc.PublishMsg(msg); err != nil { // core publish: no reply inbox on the control line
		t.Fatal(err)
	}
	testenv.WaitFor(t, 20*time.Second, "the long-subject message dead-lettered", func() bool { return len(dlq(t, b.js)) == 1 })
	waitSettled(t, b)
	if !b.nc.IsConnected() {
		t.Fatalf("the consumer's connection is %v after dead-lettering a long subject: %v", b.nc.Status(), b.nc.LastError())
	}

	letter := dlq(t, b.js)[0]
	if want := consume.DLQSubject("test", stream.Orders, mustSeq(t, letter)); letter.Subject != want {
		t.Errorf("dead letter subject %q, want %q", letter.Subject, want)
	}
	orig := letter.Header.Get(consume.HeaderDLQSubject)
	if !strings.HasPrefix(orig, "order.created.LLL") || !strings.Contains(orig, consume.TruncatedMarker+strconv.Itoa(len(long))) || len(orig) > 1024 {
		t.Errorf("original subject header = %.80q... (%d bytes), want it cut with the marker", orig, len(orig))
	}
	if junk := letter.Header.Get("X-Junk"); !strings.Contains(junk, consume.TruncatedMarker+"5000") || len(junk) > 1024 {
		t.Errorf("a 5,000-byte header was not cut with the marker: %.60q... (%d bytes)", junk, len(junk))
	}
	if !strings.Contains(letter.Header.Get(consume.HeaderDLQTruncated), "subject") {
		t.Errorf("%s = %q, want it to name the subject", consume.HeaderDLQTruncated, letter.Header.Get(consume.HeaderDLQTruncated))
	}
	if rows := deadLetterRows(t, b); len(rows) != 1 || !rows[0].published {
		t.Errorf("dead_letters = %+v, want one published row", rows)
	}

	// The consumer keeps going.
	good := created(t, "o-after-long")
	publish(t, b.js, good)
	testenv.WaitFor(t, 10*time.Second, "a later message handled", func() bool { return effects(t, b.pool, good.OrderID) == 1 })
}

// A message near the server's max_payload (in a stream created without a
// max_msg_size) is dead-lettered once, cut to fit, with the digest and size
// of its whole body, and acked: it does not loop.
func TestNearMaxPayloadIsDeadLetteredOnce(t *testing.T) {
	t.Parallel()
	b := setup(t, options{streams: stream.Config{MaxMsgSize: -1}})
	run(t, b, countEffect, consume.Config{MaxPayload: b.nc.MaxPayload()})

	msg := nats.NewMsg("order.created.o-huge")
	msg.Header.Set(event.HeaderMsgID, "01a21955-0000-7000-8000-000000000002")
	msg.Header.Set(event.HeaderType, string(event.OrderCreated))
	msg.Header.Set(event.HeaderOrderID, "o-huge")
	body := []byte(strings.Repeat("B", int(b.nc.MaxPayload())-400))
	msg.Data = body
	if _, err := b.js.PublishMsg(t.Context(), msg); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 20*time.Second, "the huge message dead-lettered", func() bool { return len(dlq(t, b.js)) == 1 })
	waitSettled(t, b)
	info, err := b.cons.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.Delivered.Consumer != 1 || info.AckFloor.Stream != 1 {
		t.Errorf("delivered %d times, ack floor %d; want one delivery, acked", info.Delivered.Consumer, info.AckFloor.Stream)
	}

	letter := dlq(t, b.js)[0]
	sum := sha256.Sum256(body)
	if got := letter.Header.Get(consume.HeaderDLQBodySHA256); got != hex.EncodeToString(sum[:]) {
		t.Errorf("body digest %q, want the original body's", got)
	}
	if got := letter.Header.Get(consume.HeaderDLQBodySize); got != strconv.Itoa(len(body)) {
		t.Errorf("body size %q, want %d", got, len(body))
	}
	if len(letter.Data) >= len(body) || !strings.HasPrefix(string(body), string(letter.Data)) {
		t.Errorf("dead letter body of %d bytes, want a prefix of the %d-byte original", len(letter.Data), len(body))
	}
	if !strings.Contains(letter.Header.Get(consume.HeaderDLQTruncated), "body") {
		t.Errorf("%s = %q, want it to name the body", consume.HeaderDLQTruncated, letter.Header.Get(consume.HeaderDLQTruncated))
	}
	if !strings.Contains(letter.Header.Get(consume.HeaderDLQError), "exceeds the limit") {
		t.Errorf("dead letter error %q", letter.Header.Get(consume.HeaderDLQError))
	}
	if rows := deadLetterRows(t, b); len(rows) != 1 || !rows[0].published || rows[0].bodySize != int64(len(body)) {
		t.Errorf("dead_letters = %+v, want one published row of the whole body's size", rows)
	}
}

// When the dead letter cannot be published at all (here: the DLQ stream is
// gone), the message is terminated anyway, recorded in dead_letters with
// published = false, and counted in jetsaga_dead_letter_failures_total.
func TestDeadLetterPublishFailureIsRecordedAndTerminated(t *testing.T) {
	t.Parallel()
	b := setup(t, options{})
	if err := b.js.DeleteStream(t.Context(), stream.DLQ); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	m := consume.NewMetrics(reg)
	run(t, b, countEffect, consume.Config{Metrics: m})

	bad := created(t, "o-undeliverable")
	bad.Body = []byte(`{"order_id":"o-undeliverable","customer_id":"c1","items":[],"total_cents":0}`)
	publish(t, b.js, bad)
	good := created(t, "o-fine")
	publish(t, b.js, good)

	testenv.WaitFor(t, 20*time.Second, "the failure recorded", func() bool {
		rows := deadLetterRows(t, b)
		return len(rows) == 1 && !rows[0].published && rows[0].pubErr != ""
	})
	waitSettled(t, b)
	testenv.WaitFor(t, 10*time.Second, "the valid message handled", func() bool { return effects(t, b.pool, good.OrderID) == 1 })
	if n := counter(t, reg, "jetsaga_dead_letter_failures_total"); n != 1 {
		t.Errorf("jetsaga_dead_letter_failures_total = %v, want 1", n)
	}
	info, err := b.cons.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.Delivered.Consumer != 2 {
		t.Errorf("%d deliveries, want 2 (no redelivery of the undeliverable dead letter)", info.Delivered.Consumer)
	}
}

// counter sums the named counter over its labels.
func counter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, f := range families {
		if f.GetName() == name {
			for _, m := range f.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}
