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
		"order 01a219d7-4c16-70e4-9390-7bf6efc98350 is in subject shard 2f of 64",
		"  ORDERS     order.created.2f  order.confirmed.2f  order.cancelled.2f\n",
		"  INVENTORY  inventory.reserved.2f  inventory.rejected.2f  inventory.released.2f\n",
		"  PAYMENTS   payment.completed.2f  payment.failed.2f  payment.refunded.2f\n",
		"Jetsaga-Order-Id header names each message's order",
		"  bin/nats stream view ORDERS --subject 'order.*.2f'\n",
		"  bin/nats stream view INVENTORY --subject 'inventory.*.2f'\n",
		"  bin/nats stream view PAYMENTS --subject 'payment.*.2f'\n",
		"bin/jetsaga trace 01a219d7-4c16-70e4-9390-7bf6efc98350\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
}
