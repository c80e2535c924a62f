package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/jetsaga/jetsaga/internal/event"
	"github.com/jetsaga/jetsaga/internal/stream"
)

// subjectCmd prints where an order's events are: the subjects of its shard,
// and the nats CLI commands that page through them. It needs no server.
func subjectCmd(_ context.Context, args []string) error {
	if len(args) != 1 || strings.HasPrefix(args[0], "-") {
		return fmt.Errorf("usage: jetsaga subject ORDER_ID")
	}
	if err := event.ValidOrderID(args[0]); err != nil {
		return fmt.Errorf("order id %q: %w", args[0], err)
	}
	writeSubjects(os.Stdout, args[0])
	return nil
}

// writeSubjects prints the shard of an order id, its events' subjects per
// stream, and the commands that read them.
func writeSubjects(w io.Writer, orderID string) {
	shard := event.Shard(orderID)
	var b strings.Builder
	fmt.Fprintf(&b, "order %s is in subject shard %s of %d; its events are on\n", orderID, shard, event.Shards)
	streams := []string{stream.Orders, stream.Inventory, stream.Payments}
	for _, name := range streams {
		var subjects []string
		for _, t := range event.Types() {
			if t.Stream() == name {
				subjects = append(subjects, event.Subject(t, orderID))
			}
		}
		fmt.Fprintf(&b, "  %-9s  %s\n", name, strings.Join(subjects, "  "))
	}
	fmt.Fprintf(&b, `among the events of the other orders of that shard (about 1/%d of the history):
the %s header names each message's order. Page through the shard with the
nats CLI (needs a terminal):
`, event.Shards, event.HeaderOrderID)
	for _, name := range streams {
		prefix, _, _ := strings.Cut(stream.Subject(name), ".")
		fmt.Fprintf(&b, "  bin/nats stream view %s --subject '%s.*.%s'\n", name, prefix, shard)
	}
	fmt.Fprintf(&b, "The order's events alone, as a causal chain: bin/jetsaga trace %s\n", orderID)
	_, _ = io.WriteString(w, b.String())
}
