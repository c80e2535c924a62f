package check

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jetsaga/jetsaga/internal/event"
	"github.com/jetsaga/jetsaga/internal/stream"
	"github.com/jetsaga/jetsaga/internal/testenv"
)

// TestStreamsReadToTheEnd: the stream check reads streams far longer than
// one pull batch, to the last message, and finds a duplicate there.
func TestStreamsReadToTheEnd(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	js := testenv.JetStream(t, testenv.StartNATS(t).Connect(t))
	if err := stream.Ensure(ctx, js, stream.Config{}); err != nil {
		t.Fatal(err)
	}
	const orders = 1500 // two events each: three pull batches of 1000
	at := time.Date(2026, 11, 24, 6, 0, 0, 0, time.UTC)
	publish := func(p event.Payload, orderID, cause string) event.Event {
		t.Helper()
		e, err := event.New(p.EventType(), orderID, cause, p, at)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := js.PublishMsgAsync(e.Msg()); err != nil {
			t.Fatal(err)
		}
		return e
	}
	items := []event.Item{{SKU: "sku-a", Qty: 1, UnitPriceCents: 100}}
	for i := range orders {
		id := fmt.Sprintf("o-%d", i)
		created := publish(event.OrderCreatedPayload{OrderID: id, CustomerID: "c", Items: items, TotalCents: 100}, id, "")
		publish(event.OrderConfirmedPayload{OrderID: id, TotalCents: 100}, id, created.ID)
	}
	// The last message: a second order.created for the first order.
	publish(event.OrderCreatedPayload{OrderID: "o-0", CustomerID: "c", Items: items, TotalCents: 100}, "o-0", "")
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		t.Fatal("publishing timed out")
	}

	rep := &Report{Streams: map[string]uint64{}}
	c := &checker{js: js, rep: rep}
	var res Result
	if err := c.streams(ctx, &res); err != nil {
		t.Fatal(err)
	}
	if got, want := rep.Streams[stream.Orders], uint64(2*orders+1); got != want {
		t.Fatalf("read %d messages of ORDERS, want %d", got, want)
	}
	if rep.Streams[stream.Inventory] != 0 || rep.Streams[stream.Payments] != 0 {
		t.Fatalf("streams %v", rep.Streams)
	}
	want := fmt.Sprintf("order o-0: order.created twice, ORDERS #1 and #%d", 2*orders+1)
	if res.Count != 1 || !strings.Contains(res.Violations[0], want) {
		t.Fatalf("result %+v, want one violation %q", res, want)
	}

	// The ordered consumers are gone once read.
	s, err := js.Stream(ctx, stream.Orders)
	if err != nil {
		t.Fatal(err)
	}
	if n := s.CachedInfo().State.Consumers; n != 0 {
		t.Errorf("ORDERS has %d consumers after the check", n)
	}
}
