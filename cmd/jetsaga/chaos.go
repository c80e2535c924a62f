package main

import (
	"context"
	"flag"
	"os"

	"github.com/jetsaga/jetsaga/chaos"
)

// chaosCmd runs the saga under fire on a fresh stack in .run/chaos and
// checks the invariants afterwards (make chaos). Exit 1 on any violation or
// an order that never ended.
func chaosCmd(ctx context.Context, args []string) error {
	o := chaos.Defaults()
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	fs.IntVar(&o.Orders, "orders", o.Orders, "orders to place")
	fs.Float64Var(&o.Rate, "rate", o.Rate, "orders placed per second")
	fs.IntVar(&o.Workers, "workers", o.Workers, "orders placed at once")
	fs.Int64Var(&o.Seed, "seed", o.Seed, "seed of the order mix and of the kills; service i gets --inject-seed=seed+i")
	fs.Float64Var(&o.Crash, "crash", o.Crash, "--inject-crash-after-commit of every service (also the relay's crash after a publish)")
	fs.Float64Var(&o.Duplicate, "duplicate", o.Duplicate, "--inject-duplicate-publish of every service")
	fs.Float64Var(&o.Redeliver, "redeliver", o.Redeliver, "--inject-redeliver of every service")
	fs.DurationVar(&o.AckWait, "ack-wait", o.AckWait, "--ack-wait of every service: how soon a dead service's messages are redelivered")
	fs.DurationVar(&o.Deadline, "deadline", o.Deadline, "--saga-deadline of the order service: sagas slower than this (a kill, a redelivery) are cancelled with reason timeout, their stock released and their charge refunded (0: the service's default)")
	fs.DurationVar(&o.KillEvery, "kill-every", o.KillEvery, "kill -9 a random service this often (0: never)")
	fs.IntVar(&o.Poison, "poison", o.Poison, "hostile messages to inject while placing (a subject filling the control line, a message near max_payload, a body that is not JSON); each must be refused or dead-lettered")
	noNATS := fs.Bool("no-nats-kill", false, "do not kill -9 nats-server")
	noPG := fs.Bool("no-pg-restart", false, "do not crash-stop Postgres")
	fs.DurationVar(&o.Timeout, "timeout", o.Timeout, "after the last order: how long to wait for every order to end and the system to be quiet")
	fs.BoolVar(&o.Keep, "keep", false, "leave the stack running afterwards (stop it with: bin/jetsaga down --run-dir .run/chaos)")
	if err := parse(fs, args); err != nil {
		return err
	}
	o.NATSKill, o.PGRestart = !*noNATS, !*noPG
	var err error
	if o.Stack, err = stackIn("", "", "chaos"); err != nil {
		return err
	}
	o.Log = cliLogger()
	rep, err := chaos.Run(ctx, o, os.Stdout)
	if err != nil {
		return err
	}
	if !rep.OK() {
		return exitError{code: 1}
	}
	return nil
}
