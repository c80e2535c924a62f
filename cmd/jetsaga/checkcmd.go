package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/jetsaga/jetsaga/check"
	"github.com/jetsaga/jetsaga/internal/event"
	"github.com/jetsaga/jetsaga/trace"
)

func checkCmd(ctx context.Context, args []string) error { return runCheck(ctx, os.Stdout, args) }

// runCheck is jetsaga check, its report written to out.
func runCheck(ctx context.Context, out io.Writer, args []string) error {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	var ep endpoints
	ep.flags(fs, "nats-url", "database-url")
	deadline := fs.Duration("deadline", check.DefaultDeadline, "orders younger than this may still be in flight: listed as such, not as violations of invariant 1 (0: every order must have ended, right after quiescence)")
	quiesce := fs.Duration("quiesce", 0, "first wait up to this long for outboxes and consumers to drain")
	ackBound := fs.Duration("ack-pending-bound", check.DefaultAckPendingBound, "report a message delivered and unacked that was stored longer ago than this (negative: off)")
	var sdb serviceDatabases
	sdb.flags(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	dbs, closeDBs, err := sdb.open(ctx, ep.databaseURL)
	if err != nil {
		return err
	}
	defer closeDBs()
	nc, js, err := connectNATS(ep)
	if err != nil {
		return err
	}
	defer nc.Close()
	if *quiesce > 0 {
		if err := check.Quiesce(ctx, dbs, js, *quiesce); err != nil {
			fmt.Fprintf(os.Stderr, "not quiescent: %v\n", err)
		}
	}
	rep, err := check.Run(ctx, dbs, js, check.Options{Deadline: *deadline, AckPendingBound: *ackBound})
	if err != nil {
		return err
	}
	rep.Write(out)
	if !rep.OK() {
		return exitError{code: 1}
	}
	return nil
}

// serviceDatabases are the --<service>-database-url flags of jetsaga check:
// each service's own database, where it may keep its schema (a database per
// service, even a server per service). Each defaults to --database-url, the
// layout where one database holds all four schemas.
type serviceDatabases struct {
	order, inventory, payment, readmodel string
}

// flags registers --order-database-url, --inventory-database-url,
// --payment-database-url and --readmodel-database-url (ORDER_DATABASE_URL,
// …: connection variables, see service.EnvName).
func (s *serviceDatabases) flags(fs *flag.FlagSet) {
	for _, f := range []struct {
		into            *string
		service, schema string
	}{
		{&s.order, "order", "orders"},
		{&s.inventory, "inventory", "inventory"},
		{&s.payment, "payment", "payment"},
		{&s.readmodel, "readmodel", "readmodel"},
	} {
		fs.StringVar(f.into, f.service+"-database-url", "",
			fmt.Sprintf("PostgreSQL database of the %s service (schema %s), if it has its own (default --database-url)", f.service, f.schema))
	}
}

// urls resolves each service's database URL: its flag, or fallback.
func (s serviceDatabases) urls(fallback string) (order, inventory, payment, readmodel string) {
	return cmp.Or(s.order, fallback), cmp.Or(s.inventory, fallback), cmp.Or(s.payment, fallback), cmp.Or(s.readmodel, fallback)
}

// open opens one pool per distinct database URL (one, in the single
// database layout) and hands each service its database's. closeAll closes
// them.
func (s serviceDatabases) open(ctx context.Context, fallback string) (dbs check.DBs, closeAll func(), err error) {
	order, inventory, payment, readmodel := s.urls(fallback)
	pools := map[string]*pgxpool.Pool{}
	closeAll = func() {
		for _, p := range pools {
			p.Close()
		}
	}
	get := func(url string) (*pgxpool.Pool, error) {
		if p := pools[url]; p != nil {
			return p, nil
		}
		// The check reads the four services' tables at once: a pool that
		// serves all four needs four connections.
		p, err := openDBConns(ctx, url, 4)
		if err != nil {
			return nil, err
		}
		pools[url] = p
		return p, nil
	}
	for _, d := range []struct {
		into **pgxpool.Pool
		url  string
	}{
		{&dbs.Order, order}, {&dbs.Inventory, inventory}, {&dbs.Payment, payment}, {&dbs.ReadModel, readmodel},
	} {
		if *d.into, err = get(d.url); err != nil {
			closeAll()
			return check.DBs{}, func() {}, err
		}
	}
	return dbs, closeAll, nil
}

func traceCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("trace", flag.ContinueOnError)
	var ep endpoints
	ep.flags(fs, "nats-url")
	within := fs.Duration("within", 0, "read only the events stored this long after the order was placed (the time in its UUIDv7 id): quick for an old order in a long history, but misses what came later, e.g. a dead letter's replay (0: to the end of the streams)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("usage: jetsaga trace [--within D] ORDER_ID")
	}
	nc, js, err := connectNATS(ep)
	if err != nil {
		return err
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	hops, err := trace.LoadWith(ctx, js, fs.Arg(0), trace.Options{Within: *within})
	if err != nil {
		return err
	}
	if len(hops) == 0 {
		return fmt.Errorf("no events for order %s in ORDERS, INVENTORY or PAYMENTS (subjects *.*.%s)", fs.Arg(0), event.Shard(fs.Arg(0)))
	}
	trace.Write(os.Stdout, hops)
	return nil
}
