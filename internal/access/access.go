// Package access says who may do what on the NATS bus: one identity per
// service, a read-only reader (jetsaga check, trace, the nats CLI examples)
// and an operator (jetsaga provision, dlq replay and purge). It renders the
// nats-server authorization block of those identities (Render) and builds a
// client's connection options from credential files (Client).
//
// The permissions are least privilege on subjects: a service publishes only
// its own events and its own dead letters, uses only the JetStream API
// subjects of its own durable consumers (create, info, next, ack), and
// subscribes only to its own inbox prefix. Streams are provisioned by the
// operator, never by a service (docs/DESIGN.md, "Identities").
package access

import (
	"fmt"
	"slices"
	"strings"
)

// Identity names beyond the services.
const (
	Reader   = "reader"   // read-only: stream and consumer info, stream reads
	Operator = "operator" // provisions streams, replays and purges dead letters
)

// Services are the service identities, in a stable order.
func Services() []string { return []string{"order", "inventory", "payment", "readmodel"} }

// Identities are every identity, services first.
func Identities() []string { return append(Services(), Reader, Operator) }

// Durable is a durable consumer of a service, on a stream.
type Durable struct{ Stream, Name string }

// durables are each service's durable consumers (docs/DESIGN.md, "Delivery"),
// its replay consumer included. A service started with a durable not listed
// here cannot create it: the e2e tests run every service under its identity.
var durables = map[string][]Durable{
	"order":     {{"ORDERS", "order-orders"}, {"INVENTORY", "order-inventory"}, {"PAYMENTS", "order-payments"}, {"REPLAY", "order-replay"}},
	"inventory": {{"ORDERS", "inventory-orders"}, {"PAYMENTS", "inventory-payments"}, {"REPLAY", "inventory-replay"}},
	"payment":   {{"INVENTORY", "payment-inventory"}, {"ORDERS", "payment-orders"}, {"REPLAY", "payment-replay"}},
	"readmodel": {{"ORDERS", "readmodel-orders"}, {"INVENTORY", "readmodel-inventory"}, {"PAYMENTS", "readmodel-payments"}, {"REPLAY", "readmodel-replay"}},
}

// Durables returns a service's durable consumers.
func Durables(service string) []Durable { return slices.Clone(durables[service]) }

// events is the subject filter of the events each service publishes.
var events = map[string]string{"order": "order.>", "inventory": "inventory.>", "payment": "payment.>"}

// eventStreams are the streams of the saga's events.
var eventStreams = []string{"ORDERS", "INVENTORY", "PAYMENTS"}

// InboxPrefix is the inbox prefix of an identity's connections
// (nats.CustomInboxPrefix): the only subjects it may subscribe to, so no
// identity can read another's replies.
func InboxPrefix(identity string) string { return "_INBOX_" + identity }

// Permissions are the subjects an identity may publish and subscribe to. A
// subject in a deny list wins over any allow.
type Permissions struct {
	PublishAllow, PublishDeny, SubscribeAllow []string
}

// For returns the permissions of an identity, or an error for an unknown one.
func For(identity string) (Permissions, error) {
	switch {
	case identity == Reader:
		return reader(), nil
	case identity == Operator:
		return operator(), nil
	case durables[identity] != nil:
		return service(identity), nil
	}
	return Permissions{}, fmt.Errorf("unknown identity %q (want one of %s)", identity, strings.Join(Identities(), ", "))
}

const api = "$JS.API."

func service(name string) Permissions {
	p := Permissions{SubscribeAllow: []string{InboxPrefix(name) + ".>"}}
	if subj, ok := events[name]; ok {
		p.PublishAllow = append(p.PublishAllow, subj)
	}
	p.PublishAllow = append(p.PublishAllow, "dlq."+name+".>", api+"INFO")
	streams := map[string]bool{"DLQ": true}
	for _, d := range durables[name] {
		streams[d.Stream] = true
		c := d.Stream + "." + d.Name
		p.PublishAllow = append(p.PublishAllow,
			api+"CONSUMER.CREATE."+c, api+"CONSUMER.CREATE."+c+".>",
			api+"CONSUMER.INFO."+c, api+"CONSUMER.MSG.NEXT."+c,
			"$JS.ACK."+c+".>")
	}
	for _, s := range sortedKeys(streams) {
		p.PublishAllow = append(p.PublishAllow, api+"STREAM.INFO."+s)
	}
	if name == "readmodel" {
		// The rebuild reads the event streams with ordered consumers:
		// ephemeral consumers of generated names. It may make, read and
		// delete those, never another service's durable.
		for _, s := range eventStreams {
			p.PublishAllow = append(p.PublishAllow,
				api+"CONSUMER.CREATE."+s+".*", api+"CONSUMER.CREATE."+s+".*.>",
				api+"CONSUMER.INFO."+s+".*", api+"CONSUMER.MSG.NEXT."+s+".*", api+"CONSUMER.DELETE."+s+".*",
				// /stats and the dashboard show how far behind every
				// service's consumer is: listing them is read-only.
				api+"CONSUMER.LIST."+s)
		}
		p.PublishDeny = othersDurables(name)
	}
	return p
}

// reader reads: stream and consumer info, stored messages, ordered
// (ephemeral) consumers, live events. It changes nothing it does not own:
// every durable's name is denied to it.
func reader() Permissions {
	return Permissions{
		PublishAllow: []string{
			api + "INFO", api + "STREAM.INFO.*", api + "STREAM.NAMES", api + "STREAM.LIST",
			api + "STREAM.MSG.GET.*", api + "DIRECT.GET.>",
			api + "CONSUMER.INFO.*.*", api + "CONSUMER.NAMES.*", api + "CONSUMER.LIST.*",
			api + "CONSUMER.CREATE.*.*", api + "CONSUMER.CREATE.*.*.>", api + "CONSUMER.MSG.NEXT.*.*", api + "CONSUMER.DELETE.*.*",
		},
		PublishDeny:    append(othersDurables(""), api+"CONSUMER.DURABLE.CREATE.>"),
		SubscribeAllow: []string{InboxPrefix(Reader) + ".>", "order.>", "inventory.>", "payment.>", "dlq.>"},
	}
}

// operator runs the JetStream API (provisioning, dlq purge) and publishes
// replays of dead letters; it publishes no saga event.
func operator() Permissions {
	return Permissions{
		PublishAllow:   []string{api + ">", "replay.>", "$JS.ACK.>"},
		SubscribeAllow: []string{InboxPrefix(Operator) + ".>", "order.>", "inventory.>", "payment.>", "dlq.>", "replay.>"},
	}
}

// othersDurables denies the JetStream API subjects that would create, take
// from or delete a durable consumer of any service but except.
func othersDurables(except string) []string {
	var deny []string
	for _, svc := range Services() {
		if svc == except {
			continue
		}
		for _, d := range durables[svc] {
			deny = append(deny,
				api+"CONSUMER.CREATE.*."+d.Name, api+"CONSUMER.CREATE.*."+d.Name+".>",
				api+"CONSUMER.MSG.NEXT.*."+d.Name, api+"CONSUMER.DELETE.*."+d.Name)
		}
	}
	return deny
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
