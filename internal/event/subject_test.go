package event_test

import (
	"fmt"
	"hash/fnv"
	"strings"
	"testing"

	"github.com/jetsaga/jetsaga/internal/event"
)

// The shard of an order id is part of the contract: every process, of every
// version, must put an order's events on the same subjects. These values are
// pinned; a change to Shard that moves them moves every subject.
func TestShardIsStable(t *testing.T) {
	t.Parallel()

	for _, tt := range []struct{ id, want string }{
		{orderID, "21"},
		{"ord-1", "32"},
		{"o-1", "28"},
		{"o-10", "08"},
		{"ghost", "10"},
		{"01a219d7-4c16-70e4-9390-7bf6efc98350", "2f"},
	} {
		if got := event.Shard(tt.id); got != tt.want {
			t.Errorf("Shard(%q) = %q, want %q", tt.id, got, tt.want)
		}
		if got := event.Subject(event.OrderConfirmed, tt.id); got != "order.confirmed."+tt.want {
			t.Errorf("Subject(order.confirmed, %q) = %q", tt.id, got)
		}
	}
}

// Shard is FNV-1a 32-bit of the id's bytes, modulo Shards, in two hex
// digits: checked against the standard library's FNV-1a for many ids.
func TestShardIsFNV1aModShards(t *testing.T) {
	t.Parallel()

	if event.Shards <= 0 || event.Shards > 16*16 || event.Shards&(event.Shards-1) != 0 {
		t.Fatalf("Shards = %d: want a power of two that two hex digits can name", event.Shards)
	}
	for i := range 5000 {
		id := fmt.Sprintf("0190f5c2-7d1e-7%03x-9c4d-%012x", i%4096, i*7919)
		h := fnv.New32a()
		_, _ = h.Write([]byte(id))
		if want, got := fmt.Sprintf("%02x", h.Sum32()%event.Shards), event.Shard(id); got != want {
			t.Fatalf("Shard(%q) = %q, want %q", id, got, want)
		}
	}
}

// Many order ids spread over every shard, none much fuller than the rest:
// one shard holds about 1/Shards of the history.
func TestShardSpreadsOrderIDs(t *testing.T) {
	t.Parallel()

	const perShard = 100
	counts := map[string]int{}
	for i := range event.Shards * perShard {
		// UUIDv7-shaped ids, as the order service makes them: a
		// millisecond timestamp first, random bits after.
		id := fmt.Sprintf("%08x-%04x-7%03x-9%03x-%012x", 0x0190f5c2+i/1000, i%1000, i%4096, (i*31)%4096, uint64(i)*0x9e3779b97f4a7c15>>16)
		counts[event.Shard(id)]++
	}
	if len(counts) != event.Shards {
		t.Fatalf("%d ids fell in %d shards, want all %d", event.Shards*perShard, len(counts), event.Shards)
	}
	for shard, n := range counts {
		// A fair hash gives 100 ± 10 per shard; the least and fullest of
		// 64 shards land near 75 and 125.
		if n < perShard/2 || n > perShard*3/2 {
			t.Errorf("shard %s holds %d ids, want about %d", shard, n, perShard)
		}
	}
}

// Whatever the order id — a valid one or not — its shard is one subject
// token of two lowercase hex digits, below Shards, and its subject has
// exactly three tokens.
func TestShardIsOneSubjectToken(t *testing.T) {
	t.Parallel()

	ids := []string{"", "a", ">", "*", "a.b", "a b", strings.Repeat("L", 4040), "\xff\x00", "ünïcode", orderID}
	for i := range 2000 {
		ids = append(ids, fmt.Sprintf("order-%d", i))
	}
	for _, id := range ids {
		s := event.Shard(id)
		var n int
		if _, err := fmt.Sscanf(s, "%02x", &n); err != nil || len(s) != 2 || s != strings.ToLower(s) || n >= event.Shards {
			t.Fatalf("Shard(%.20q) = %q, want two lowercase hex digits below %x", id, s, event.Shards)
		}
		if strings.ContainsAny(s, ".*> \t") {
			t.Fatalf("Shard(%.20q) = %q is not a subject token", id, s)
		}
		if subj := event.Subject(event.PaymentFailed, id); len(strings.Split(subj, ".")) != 3 {
			t.Fatalf("Subject(payment.failed, %.20q) = %q, want 3 tokens", id, subj)
		}
	}
}

// Filter is the wildcard of a type, never a shard: Subject(t, ">") would hash
// ">" and filter one shard of the type.
func TestFilter(t *testing.T) {
	t.Parallel()

	for _, typ := range event.Types() {
		if got, want := event.Filter(typ), string(typ)+".>"; got != want {
			t.Errorf("Filter(%s) = %q, want %q", typ, got, want)
		}
	}
	if event.Subject(event.PaymentFailed, ">") == event.Filter(event.PaymentFailed) {
		t.Error("Subject(t, \">\") is the filter: it must hash \">\" like any id")
	}
}

func TestIsSubject(t *testing.T) {
	t.Parallel()

	other := "0190f5c2-7d1e-7a3b-9c4d-5e6f7a8b9c0e"
	if event.Shard(other) == event.Shard(orderID) {
		t.Fatalf("%s and %s share a shard: pick another", other, orderID)
	}
	// An order in the same shard: its subjects are orderID's too, which is
	// why a reader of one order's events matches the order id header.
	var neighbour string
	for i := 0; neighbour == ""; i++ {
		if id := fmt.Sprintf("neighbour-%d", i); event.Shard(id) == event.Shard(orderID) {
			neighbour = id
		}
	}
	tests := []struct {
		subject string
		want    bool
	}{
		{event.Subject(event.OrderCreated, orderID), true},
		{event.LegacySubject(event.OrderCreated, orderID), true}, // written before sharding
		{"order.created." + orderID, true},
		{"order.created.21", true},
		{"order.created." + other, false},
		{event.Subject(event.OrderCreated, other), false},
		{event.Subject(event.OrderCreated, neighbour), true},
		{event.LegacySubject(event.OrderCreated, neighbour), false},
		{"order.confirmed.21", false},
		{"order.created.21.x", false},
		{"order.created.>", false},
		{"order.created.*", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := event.IsSubject(tt.subject, event.OrderCreated, orderID); got != tt.want {
			t.Errorf("IsSubject(%q, order.created, %s) = %v, want %v", tt.subject, orderID, got, tt.want)
		}
	}
}
