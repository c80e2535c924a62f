package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestWriteSubjects(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	writeSubjects(&b, "01a219d7-4c16-70e4-9390-7bf6efc98350")
	out := b.String()
	t.Logf("\n%s", out)
	for _, want := range []string{
		"order 01a219d7-4c16-70e4-9390-7bf6efc98350 is in subject shard 0af of 1024",
		"  ORDERS     order.created.0af  order.confirmed.0af  order.cancelled.0af\n",
		"  INVENTORY  inventory.reserved.0af  inventory.rejected.0af  inventory.released.0af\n",
		"  PAYMENTS   payment.completed.0af  payment.failed.0af  payment.refunded.0af\n",
		"Jetsaga-Order-Id header names each message's order",
		"  bin/nats stream view ORDERS --subject 'order.*.0af'\n",
		"  bin/nats stream view INVENTORY --subject 'inventory.*.0af'\n",
		"  bin/nats stream view PAYMENTS --subject 'payment.*.0af'\n",
		"bin/jetsaga trace 01a219d7-4c16-70e4-9390-7bf6efc98350\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
}
