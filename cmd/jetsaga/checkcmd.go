package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/jetsaga/jetsaga/check"
	"github.com/jetsaga/jetsaga/trace"
)

func checkCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	var ep endpoints
	ep.flags(fs, "nats-url", "database-url")
	deadline := fs.Duration("deadline", check.DefaultDeadline, "orders younger than this may still be in flight: listed as such, not as violations of invariant 1 (0: every order must have ended, right after quiescence)")
	quiesce := fs.Duration("quiesce", 0, "first wait up to this long for outboxes and consumers to drain")
	ackBound := fs.Duration("ack-pending-bound", check.DefaultAckPendingBound, "report a message delivered and unacked that was stored longer ago than this (negative: off)")
	if err := parse(fs, args); err != nil {
		return err
	}
	pool, err := openDB(ctx, ep.databaseURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	nc, js, err := connectNATS(ep)
	if err != nil {
		return err
	}
	defer nc.Close()
	if *quiesce > 0 {
		if err := check.Quiesce(ctx, check.OneDB(pool), js, *quiesce); err != nil {
			fmt.Fprintf(os.Stderr, "not quiescent: %v\n", err)
		}
	}
	rep, err := check.Run(ctx, check.OneDB(pool), js, check.Options{Deadline: *deadline, AckPendingBound: *ackBound})
	if err != nil {
		return err
	}
	rep.Write(os.Stdout)
	if !rep.OK() {
		return exitError{code: 1}
	}
	return nil
}

func traceCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("trace", flag.ContinueOnError)
	var ep endpoints
	ep.flags(fs, "nats-url")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("usage: jetsaga trace ORDER_ID")
	}
	nc, js, err := connectNATS(ep)
	if err != nil {
		return err
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	hops, err := trace.Load(ctx, js, fs.Arg(0))
	if err != nil {
		return err
	}
	if len(hops) == 0 {
		return fmt.Errorf("no events for order %s in ORDERS, INVENTORY or PAYMENTS", fs.Arg(0))
	}
	trace.Write(os.Stdout, hops)
	return nil
}
