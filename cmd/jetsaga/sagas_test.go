package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/jetsaga/jetsaga/client"
	"github.com/jetsaga/jetsaga/internal/event"
	"github.com/jetsaga/jetsaga/internal/service"
	"github.com/jetsaga/jetsaga/internal/testenv"
	"github.com/jetsaga/jetsaga/readmodel"
)

// startReadmodel runs the read model alone against a fresh NATS and
// database, and returns its URL and a function that publishes an event.
func startReadmodel(t *testing.T) (string, func(event.Event)) {
	t.Helper()
	n := testenv.StartNATS(t)
	js := testenv.JetStream(t, n.Connect(t))
	base := testenv.RunService(t, service.Config{NATSURL: n.URL(), DatabaseURL: testenv.DatabaseURL(t)},
		readmodel.Spec(readmodel.Config{StuckAfter: time.Hour}))
	publish := func(e event.Event) {
		t.Helper()
		if _, err := js.PublishMsg(t.Context(), e.Msg()); err != nil {
			t.Fatalf("publish %s: %v", e.Type, err)
		}
	}
	return base, publish
}

// newEvent builds an event of the test's sagas or fails the test.
func newEvent(t *testing.T, typ event.Type, orderID, cause string, at time.Time) event.Event {
	t.Helper()
	items := []event.Item{{SKU: "sku-1", Qty: 1, UnitPriceCents: 1000}}
	var p event.Payload
	switch typ {
	case event.OrderCreated:
		p = event.OrderCreatedPayload{OrderID: orderID, CustomerID: "c1", Items: items, TotalCents: 1000}
	case event.InventoryReserved:
		p = event.InventoryReservedPayload{OrderID: orderID, Items: items, TotalCents: 1000}
	default:
		t.Fatalf("no payload for %s", typ)
	}
	e, err := event.New(typ, orderID, cause, p, at)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// runCLI runs jetsaga sagas with args and returns what it printed.
func runCLI(t *testing.T, args ...string) string {
	t.Helper()
	var out bytes.Buffer
	if err := runSagas(t.Context(), &out, args); err != nil {
		t.Fatalf("jetsaga sagas %s: %v", strings.Join(args, " "), err)
	}
	return out.String()
}

// TestSagasCommand runs jetsaga sagas against a read model alone: three
// sagas published to the streams (no inventory or payment service handles
// them) are listed oldest first with what each waits for; --stuck, --limit
// and --json shape the output; an empty list is one line.
func TestSagasCommand(t *testing.T) {
	t.Parallel()

	base, publish := startReadmodel(t)
	url := "--readmodel-url=" + base

	if got, want := runCLI(t, url), "no sagas in flight\n"; got != want {
		t.Errorf("empty: %q, want %q", got, want)
	}

	now := time.Now()
	a := newEvent(t, event.OrderCreated, "cli-a", "", now.Add(-3*time.Minute-30*time.Second))
	b := newEvent(t, event.OrderCreated, "cli-b", "", now.Add(-2*time.Minute-30*time.Second))
	bRes := newEvent(t, event.InventoryReserved, "cli-b", b.ID, now.Add(-time.Minute-30*time.Second))
	cCreated := newEvent(t, event.OrderCreated, "cli-c", "", now.Add(-2*time.Second)) // never published
	cRes := newEvent(t, event.InventoryReserved, "cli-c", cCreated.ID, now.Add(-time.Second))
	for _, e := range []event.Event{a, b, bRes, cRes} {
		publish(e)
	}
	c := &client.Client{ReadmodelURL: base}
	testenv.WaitFor(t, 30*time.Second, "three sagas projected", func() bool {
		l, err := c.Sagas(t.Context(), client.SagaQuery{})
		return err == nil && l.Counts.InFlight == 3 && len(l.Sagas) == 3 && l.Sagas[1].Status == "RESERVED"
	})

	out := runCLI(t, url)
	t.Logf("jetsaga sagas:\n%s", out)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 5 {
		t.Fatalf("table has %d lines, want a header, 3 sagas and a footer:\n%s", len(lines), out)
	}
	for i, want := range [][]string{
		{"ORDER", "STATUS", "AGE", "LAST EVENT", "WAITING FOR"},
		{"cli-a", "PENDING", " 3m", "order.created 3m", "inventory (reserve)"},
		{"cli-b", "RESERVED", " 2m", "inventory.reserved 1m", "payment (charge)"},
		{"cli-c", "RESERVED", "inventory.reserved", "payment (charge)", "read model lacks order.created"},
		{"3 in flight, 0 stuck (older than 1h0m0s)"},
	} {
		for _, w := range want {
			if !strings.Contains(lines[i], w) {
				t.Errorf("line %d %q lacks %q\n%s", i, lines[i], w, out)
			}
		}
	}

	// --stuck with the read model's threshold (1h): none; with 3m: cli-a.
	if got, want := runCLI(t, url, "--stuck"), "no sagas stuck (older than 1h0m0s); 3 in flight\n"; got != want {
		t.Errorf("--stuck: %q, want %q", got, want)
	}
	out = runCLI(t, url, "--stuck", "--older-than", "3m")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 3 || !strings.HasPrefix(lines[1], "cli-a ") ||
		lines[2] != "3 in flight, 1 stuck (older than 3m0s)" {
		t.Errorf("--stuck --older-than 3m:\n%s", out)
	}

	// --limit 2 reads pages up to 2 and says what it left out.
	out = runCLI(t, url, "--limit", "2")
	if !strings.Contains(out, "cli-b") || strings.Contains(out, "cli-c") ||
		!strings.HasSuffix(out, "3 in flight, 0 stuck (older than 1h0m0s); showing the oldest 2 of 3 in flight (--limit)\n") {
		t.Errorf("--limit 2:\n%s", out)
	}

	var list client.SagaList
	if err := json.Unmarshal([]byte(runCLI(t, url, "--json", "--older-than", "0s")), &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Sagas) != 3 || list.Counts.Stuck != 3 || list.Sagas[0].WaitingFor == nil ||
		list.Sagas[0].WaitingFor.Service != "inventory" || list.Sagas[0].LastEvent.ID != a.ID || list.Next != "" {
		t.Errorf("--json = %+v", list)
	}

	// The missing step arrives: cli-a waits for payment now.
	publish(newEvent(t, event.InventoryReserved, "cli-a", a.ID, now.Add(-3*time.Minute-20*time.Second)))
	testenv.WaitFor(t, 30*time.Second, "cli-a reserved", func() bool {
		return strings.Contains(strings.Split(runCLI(t, url), "\n")[1], "payment (charge)")
	})
}

func TestSagasCommandErrors(t *testing.T) {
	t.Parallel()

	for _, args := range [][]string{
		{"--limit", "0"},
		{"--older-than", "-1s"},
		{"extra"},
		{"--readmodel-url", "http://127.0.0.1:1"}, // nothing listens
	} {
		var out bytes.Buffer
		if err := runSagas(t.Context(), &out, args); err == nil {
			t.Errorf("jetsaga sagas %v: no error, printed %q", args, out.String())
		}
	}
}

// TestSagasOlderThanFromEnv: JETSAGA_OLDER_THAN sets the threshold as
// --older-than does. Not parallel: it sets the environment.
func TestSagasOlderThanFromEnv(t *testing.T) {
	base, publish := startReadmodel(t)
	publish(newEvent(t, event.OrderCreated, "env-a", "", time.Now().Add(-time.Minute)))
	c := &client.Client{ReadmodelURL: base}
	testenv.WaitFor(t, 30*time.Second, "env-a projected", func() bool {
		l, err := c.Sagas(t.Context(), client.SagaQuery{})
		return err == nil && l.Counts.InFlight == 1
	})
	t.Setenv("JETSAGA_OLDER_THAN", "30s")
	out := runCLI(t, "--readmodel-url", base, "--stuck")
	if !strings.HasPrefix(strings.Split(out, "\n")[1], "env-a ") || !strings.Contains(out, "1 stuck (older than 30s)") {
		t.Errorf("--stuck with JETSAGA_OLDER_THAN=30s:\n%s", out)
	}
}
