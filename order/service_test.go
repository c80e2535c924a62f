package order

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap/zaptest"

	"github.com/jetsaga/jetsaga/internal/consume"
	"github.com/jetsaga/jetsaga/internal/event"
	"github.com/jetsaga/jetsaga/internal/service"
	"github.com/jetsaga/jetsaga/internal/stream"
	"github.com/jetsaga/jetsaga/internal/testenv"
)

// TestServiceRun runs the order service as its binary does, on embedded NATS
// and a real database, and plays the other services by publishing their
// events: an order goes from POST /orders to order.confirmed on the ORDERS
// stream, a re-emitted payment.completed has no second effect, and an event
// for an unknown order lands in the DLQ.
func TestServiceRun(t *testing.T) {
	t.Parallel()
	n := testenv.StartNATS(t)
	js := testenv.JetStream(t, n.Connect(t))
	dbURL := testenv.DatabaseURL(t)

	ctx, stop := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- service.Run(ctx, service.Config{
			NATSURL: n.URL(), DatabaseURL: dbURL, HTTPAddr: "127.0.0.1:0", Workers: 1,
			Logger:  zaptest.NewLogger(t),
			OnReady: func(addr string) { ready <- addr },
		}, Spec(Config{}))
	}()
	stopped := false
	shutdown := func() {
		if stopped {
			return
		}
		stopped = true
		stop()
		if err := <-done; err != nil {
			t.Errorf("service.Run: %v", err)
		}
	}
	t.Cleanup(shutdown)
	var base string
	select {
	case addr := <-ready:
		base = "http://" + addr
	case err := <-done:
		stopped = true
		t.Fatalf("service.Run ended before ready: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("service not ready after a minute")
	}

	// The consumers exist with the documented names and filters.
	for _, c := range []struct {
		stream, durable string
		subjects        []string
	}{
		{stream.Inventory, ConsumerInventory, []string{"inventory.reserved.>", "inventory.rejected.>", "inventory.released.>"}},
		{stream.Payments, ConsumerPayments, []string{"payment.completed.>", "payment.failed.>", "payment.refunded.>"}},
	} {
		cons, err := js.Consumer(t.Context(), c.stream, c.durable)
		if err != nil {
			t.Fatalf("consumer %s on %s: %v", c.durable, c.stream, err)
		}
		if got := cons.CachedInfo().Config.FilterSubjects; !sameSet(got, c.subjects) {
			t.Errorf("consumer %s filters %v, want %v", c.durable, got, c.subjects)
		}
	}

	res, err := http.Post(base+"/orders", "application/json", strings.NewReader(validBody))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusAccepted {
		t.Fatalf("POST /orders: status %d, body %s", res.StatusCode, body)
	}
	var placed PlaceResponse
	if err := json.Unmarshal(body, &placed); err != nil {
		t.Fatal(err)
	}
	id := placed.OrderID

	created := waitEvent(t, js, stream.Orders, event.Subject(event.OrderCreated, id))
	if created.CausationID != "" {
		t.Errorf("order.created has causation %q", created.CausationID)
	}

	publish := func(typ event.Type, orderID, causation string, p event.Payload) event.Event {
		t.Helper()
		e, err := event.New(typ, orderID, causation, p, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := js.PublishMsg(t.Context(), e.Msg()); err != nil {
			t.Fatalf("publish %s: %v", typ, err)
		}
		return e
	}
	reservedEv := publish(event.InventoryReserved, id, created.ID,
		event.InventoryReservedPayload{OrderID: id, Items: testItems, TotalCents: testTotal})
	paid := publish(event.PaymentCompleted, id, reservedEv.ID,
		event.PaymentCompletedPayload{OrderID: id, PaymentID: "pay-1", AmountCents: testTotal})

	confirmed := waitEvent(t, js, stream.Orders, event.Subject(event.OrderConfirmed, id))
	if confirmed.CausationID != paid.ID {
		t.Errorf("order.confirmed caused by %s, want payment.completed %s", confirmed.CausationID, paid.ID)
	}
	// The two consumers run independently: payment.completed may be
	// handled before inventory.reserved, which then changes nothing.
	pool := testenv.PoolOn(t, dbURL, Schema, Migrations())
	waitHandled := func(consumer string, e event.Event) {
		t.Helper()
		testenv.WaitFor(t, 30*time.Second, string(e.Type)+" in the inbox", func() bool {
			var n int
			err := pool.QueryRow(t.Context(), `SELECT count(*) FROM inbox WHERE consumer = $1 AND event_id = $2`,
				consumer, e.ID).Scan(&n)
			return err == nil && n == 1
		})
	}
	waitHandled(ConsumerInventory, reservedEv)
	waitHandled(ConsumerPayments, paid)
	view := getView(t, base, id)
	if view.Status != Confirmed || view.Reason != "" {
		t.Errorf("GET after confirmation: %+v", view)
	}

	// A re-emitted payment.completed (new event id): handled, no effect.
	again := publish(event.PaymentCompleted, id, reservedEv.ID,
		event.PaymentCompletedPayload{OrderID: id, PaymentID: "pay-1", AmountCents: testTotal})
	waitHandled(ConsumerPayments, again)
	if n := orderEventCount(t, js, stream.Orders, id); n != 2 {
		t.Errorf("ORDERS holds %d events for the order, want order.created and order.confirmed", n)
	}
	if v := getView(t, base, id); v.Version != view.Version || v.Status != Confirmed {
		t.Errorf("re-emitted payment.completed changed the order: %+v, was %+v", v, view)
	}

	// An event for an order the service does not hold is dead-lettered.
	publish(event.InventoryReserved, "ghost", created.ID,
		event.InventoryReservedPayload{OrderID: "ghost", Items: testItems, TotalCents: testTotal})
	dead := waitMsg(t, js, stream.DLQ, "dlq."+Name+"."+stream.Inventory+".*")
	if got := dead.Header.Get(consume.HeaderDLQSubject); got != event.Subject(event.InventoryReserved, "ghost") {
		t.Errorf("dead letter of %q, want the ghost's inventory.reserved", got)
	}
	if !strings.Contains(dead.Header.Get(consume.HeaderDLQError), "not found") {
		t.Errorf("dead letter error %q", dead.Header.Get(consume.HeaderDLQError))
	}

	shutdown()
}

// waitMsg waits for a message on subject in the named stream and returns the last one.
func waitMsg(t *testing.T, js jetstream.JetStream, streamName, subject string) *jetstream.RawStreamMsg {
	t.Helper()
	s, err := js.Stream(t.Context(), streamName)
	if err != nil {
		t.Fatal(err)
	}
	var msg *jetstream.RawStreamMsg
	testenv.WaitFor(t, 30*time.Second, subject+" in "+streamName, func() bool {
		m, err := s.GetLastMsgForSubject(t.Context(), subject)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return false
		}
		if err != nil {
			t.Fatalf("get %s: %v", subject, err)
		}
		msg = m
		return true
	})
	return msg
}

// waitEvent is waitMsg decoded as an event.
func waitEvent(t *testing.T, js jetstream.JetStream, streamName, subject string) event.Event {
	t.Helper()
	m := waitMsg(t, js, streamName, subject)
	e, err := event.FromMsg(m.Subject, m.Header, m.Data)
	if err != nil {
		t.Fatalf("%s: %v", subject, err)
	}
	return e
}

// orderEventCount counts the messages of a stream that are the order's: on
// its shard's subjects, with its id in the Jetsaga-Order-Id header.
func orderEventCount(t *testing.T, js jetstream.JetStream, streamName, orderID string) int {
	t.Helper()
	s, err := js.Stream(t.Context(), streamName)
	if err != nil {
		t.Fatal(err)
	}
	filter := "*.*." + event.Shard(orderID)
	n := 0
	for seq := uint64(1); ; {
		m, err := s.GetMsg(t.Context(), seq, jetstream.WithGetMsgSubject(filter))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return n
		}
		if err != nil {
			t.Fatalf("get %s from #%d: %v", filter, seq, err)
		}
		if m.Header.Get(event.HeaderOrderID) == orderID {
			n++
		}
		seq = m.Sequence + 1
	}
}

func getView(t *testing.T, base, id string) OrderView {
	t.Helper()
	res, err := http.Get(base + StatusURL(id))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: status %d", StatusURL(id), res.StatusCode)
	}
	var v OrderView
	if err := json.NewDecoder(res.Body).Decode(&v); err != nil {
		t.Fatal(fmt.Errorf("GET %s: %w", StatusURL(id), err))
	}
	return v
}
