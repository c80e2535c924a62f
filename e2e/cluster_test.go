package e2e_test

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/jetsaga/jetsaga/internal/fault"
	"github.com/jetsaga/jetsaga/internal/stream"
	"github.com/jetsaga/jetsaga/internal/testenv"
)

// A 3-node JetStream cluster on loopback, streams R3, every service under
// its own identity: the leader of ORDERS is stopped in the middle of a burst
// of orders, a new leader takes over, and every saga still completes with
// every invariant holding.
func TestClusterSurvivesTheOrdersLeaderStopping(t *testing.T) {
	t.Parallel()
	w := newWorld(t, worldOptions{
		seedStock:        map[string]int{"sku-a": 1000, "sku-b": 1000, "sku-scarce": 5},
		declineOverCents: declineOver,
		identities:       true,
		cluster:          true,
	})
	for _, name := range []string{stream.Orders, stream.Inventory, stream.Payments} {
		testenv.WaitStreamCurrent(t, w.js, name, 3)
	}
	first := w.place("c0", item{"sku-a", 1, 100})
	w.waitTerminal(first)

	const burst = 60
	ids := make([]string, burst)
	var wg sync.WaitGroup
	placed := make(chan int, burst)
	wg.Go(func() {
		for i := range burst {
			items := []item{{"sku-a", 1 + i%3, int64(700 * (i + 1))}}
			if i%7 == 0 {
				items = append(items, item{"sku-scarce", 1, 100})
			}
			ids[i] = w.placeRetrying(fmt.Sprintf("burst-%d", i), fmt.Sprintf("c%d", i), items...)
			placed <- i
		}
	})
	for range burst / 3 {
		<-placed
	}
	leader := w.cluster.StreamLeader(stream.Orders)
	if leader == nil {
		t.Fatal("ORDERS has no leader")
	}
	leader.Stop()
	t.Logf("stopped %s, the leader of ORDERS, after %d orders", leader.Name(), burst/3)
	wg.Wait()
	testenv.WaitFor(t, 30*time.Second, "a new leader of ORDERS", func() bool {
		l := w.cluster.StreamLeader(stream.Orders)
		return l != nil && l != leader
	})
	w.waitTerminal(append(ids, first)...)
	w.checkInvariants()
}

// Two instances of every service share each durable consumer and each
// outbox; every event is delivered twice (a Nak after each commit) and
// published twice: one effect each, the invariants hold.
func TestTwoInstancesEveryEventTwiceOneEffect(t *testing.T) {
	t.Parallel()
	w := newWorld(t, worldOptions{
		seedStock:        map[string]int{"sku-a": 1000, "sku-scarce": 3},
		declineOverCents: declineOver,
		instances:        2,
		faults:           fault.Config{Redeliver: 1, DuplicatePublish: 1},
	})
	var ids []string
	for i := range 30 {
		items := []item{{"sku-a", 1 + i%3, int64(600 * (i + 1))}}
		if i%5 == 0 {
			items = append(items, item{"sku-scarce", 1, 100})
		}
		// Orders reach both order instances.
		name := "order"
		if i%2 == 1 {
			name = "order#2"
		}
		ids = append(ids, w.placeAt(name, fmt.Sprintf("c%d", i), items...))
	}
	w.waitTerminal(ids...)
	w.checkInvariants()
	// One payment row per order that was reserved, whatever was delivered twice.
	if got, want := w.scalar(`SELECT count(*)::text FROM payment.payments`),
		w.scalar(`SELECT count(*)::text FROM orders.orders WHERE reason NOT IN ('out_of_stock','unknown_sku')`); got != want {
		t.Errorf("%s payment rows, want %s (one per order reserved)", got, want)
	}
	// Both instances of each service did work.
	for _, name := range w.instanceNames() {
		if n := handled(t, w.url(name)); n == 0 {
			t.Errorf("%s handled no message", name)
		}
	}
}

// placeAt posts an order to one instance of the order service.
func (w *world) placeAt(instance, customer string, items ...item) string {
	w.t.Helper()
	saved := w.urlOf
	w.urlOf = func(string) string {
		w.mu.Lock()
		defer w.mu.Unlock()
		return "http://" + w.svcs[instance].addr
	}
	defer func() { w.urlOf = saved }()
	return w.place(customer, items...)
}

// handled is how many messages a service instance handled (any outcome).
func handled(t *testing.T, url string) float64 {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	return sumCounter(t, resp.Body, "jetsaga_messages_total")
}
