// Command jetsaga is the user's CLI for the saga: place orders, check the
// invariants, trace one order's events, and run the local stack.
//
//	jetsaga place --customer c1 --item sku-1:2:1999 [--item ...] [--wait]
//	jetsaga check                 check docs/DESIGN.md's invariants 1-5
//	jetsaga trace <order-id>      the causal chain of one order's events
//	jetsaga subject <order-id>    the subjects (shard) of one order's events
//	jetsaga sagas [--stuck]       the sagas in flight (or stuck), from the read model
//	jetsaga up | down | demo      the local stack (what make up/down/demo run)
//	jetsaga chaos                 the saga under fire, then the invariants (make chaos)
//	jetsaga load                  put a load on the stack and measure it
//	jetsaga bench                 the benchmark of make bench on a fresh stack
//	jetsaga bench-history         throughput at 0, 100k, 1M sagas of history (make bench-history)
//	jetsaga dlq ls|show|replay|purge   the dead letters
//	jetsaga readmodel rebuild     rebuild the read model from the streams
//	jetsaga screenshot            pictures of the dashboard (make screenshot)
//	jetsaga provision             create the streams under the operator identity
//	jetsaga identities DIR        nkeys and the nats-server authorization block
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

const usage = `jetsaga — a choreography saga on NATS JetStream and PostgreSQL

usage:
  jetsaga place --customer ID --item SKU:QTY:PRICE_CENTS [--item ...] [--count N] [--wait]
  jetsaga check [--deadline 1m] [--quiesce 0s] [--database-url URL]
                [--order-database-url URL] [--inventory-database-url URL]
                [--payment-database-url URL] [--readmodel-database-url URL]
                    docs/DESIGN.md's invariants 1-5; each service's database defaults
                    to --database-url (one database holding the four schemas)
  jetsaga trace [--within D] ORDER_ID
                    one order's events from the streams as a causal chain; --within
                    reads only what was stored D after the order was placed (quick
                    for an old order in a long history; misses later replays)
  jetsaga subject ORDER_ID
                    the shard of an order's subjects, and the nats CLI commands that
                    page through it (other orders of the shard included)
  jetsaga sagas [--stuck] [--older-than D] [--limit 100] [--json]
                    the sagas not CONFIRMED or CANCELLED yet, oldest first, from the
                    read model: age, last event, the service each waits for; --stuck
                    only those older than the read model's --stuck-after (or D)
  jetsaga up        start the local stack in .run/ (make up)
  jetsaga down      stop it (make down)
  jetsaga demo      run the scripted demo on a fresh stack (make demo)
  jetsaga chaos [--orders 2000] [--rate 25] [--seed 1] [--crash 0.05] [--duplicate 0.05]
                [--redeliver 0.05] [--kill-every 4s] [--no-nats-kill] [--no-pg-restart] [--keep]
                    the saga under fire on a fresh stack in .run/chaos: injected crashes,
                    duplicates and redeliveries, kill -9s of services and nats-server,
                    a Postgres crash; then every invariant (make chaos)
  jetsaga load [--rate 0] [--concurrency 128] [--duration 30s] [--orders N]
               [--mix confirm=80,decline=10,oos=10] [--drain 10s] [--json]
                    place orders through the order API (open loop at --rate, or closed
                    loop with --concurrency sagas in flight), follow every saga to its
                    terminal event, report sagas/s, latency, read-model lag, CPU per saga
  jetsaga bench [--duration 60s] [--rate 500] [--concurrency 128] [--keep]
                    on a fresh stack in .run/bench: the machine's ceilings (JetStream
                    publish, Postgres transactions), then the maximum sustained rate
                    and a fixed offered rate; one table (make bench)
  jetsaga bench-history [--levels 0,100000,1000000] [--duration 60s] [--check] [--keep]
                    on a fresh stack in .run/history: fill the history to each level
                    (real sagas, injected faster than HTTP), then the maximum sustained
                    rate, nats-server's memory and store, every table's size (make bench-history)
  jetsaga dlq ls [--service S] [--json] | show SEQ | replay SEQ...|--all [--service S] [--dry-run]
              | purge [--service S]
                    the dead letters: list, show one, hand them again to the consumer
                    that dead-lettered them, remove them
  jetsaga readmodel rebuild [--readmodel-url URL] [--force] [--json]
                    rebuild the read model from the streams' history while it keeps
                    serving, switch over atomically, report events replayed and time
  jetsaga screenshot [--out docs/dashboard.png] [--saga-out docs/dashboard-saga.png]
                     [--duration 90s] [--rate 25]
                    the demo's orders on a fresh stack in .run/screenshot, then
                    pictures of the dashboard taken by headless Chromium (make screenshot)
  jetsaga provision [--replicas 3] [--nats-nkey-seed FILE]
                    create or update every stream under the operator identity (with
                    per-service identities the services may not)
  jetsaga identities DIR
                    a fresh nkey seed per identity and the nats-server authorization
                    block of their permissions (deploy/nats/identities holds the dev set)
  jetsaga supervise --run-dir DIR   (used by up) run and restart the services

Every command takes -h, which names each flag's environment variable.
Connection flags default to the local stack and read NATS_URL, DATABASE_URL,
ORDER_URL, INVENTORY_URL and READMODEL_URL (check's per-service databases:
ORDER_DATABASE_URL, INVENTORY_DATABASE_URL, PAYMENT_DATABASE_URL,
READMODEL_DATABASE_URL); every other flag reads JETSAGA_<FLAG>
(--timeout: JETSAGA_TIMEOUT). The stack reads JETSAGA_NATS_PORT,
JETSAGA_PG_PORT, JETSAGA_<SERVICE>_ADDR and JETSAGA_<SERVICE>_FLAGS.
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	cmds := map[string]func(context.Context, []string) error{
		"place":         place,
		"check":         checkCmd,
		"trace":         traceCmd,
		"subject":       subjectCmd,
		"sagas":         sagasCmd,
		"up":            up,
		"down":          down,
		"demo":          demo,
		"chaos":         chaosCmd,
		"load":          loadCmd,
		"bench":         benchCmd,
		"dlq":           dlqCmd,
		"supervise":     supervise,
		"readmodel":     readmodelCmd,
		"screenshot":    screenshot,
		"provision":     provisionCmd,
		"identities":    identitiesCmd,
		"bench-history": benchHistoryCmd,
	}
	name, args := os.Args[1], os.Args[2:]
	if name == "-h" || name == "--help" || name == "help" {
		fmt.Print(usage)
		return
	}
	run, ok := cmds[name]
	if !ok {
		fmt.Fprintf(os.Stderr, "jetsaga: unknown command %q\n\n%s", name, usage)
		os.Exit(2)
	}
	if err := run(ctx, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		var ex exitError
		if asExit(err, &ex) {
			os.Exit(ex.code)
		}
		fmt.Fprintf(os.Stderr, "jetsaga %s: %v\n", name, err)
		os.Exit(1)
	}
}

// exitError ends the command with a code after it printed its own report.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

func asExit(err error, target *exitError) bool {
	e, ok := err.(exitError)
	if ok {
		*target = e
	}
	return ok
}
