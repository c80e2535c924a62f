package main

import (
	"context"
	"flag"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/jetsaga/jetsaga/stack"
)

// stackFlags registers the flags of the commands that run the local stack
// and has their -h name the stack's environment variables too.
func stackFlags(fs *flag.FlagSet) (root, runDir *string) {
	root = fs.String("root", "", "the jetsaga checkout holding bin/ and deploy/ (default: the one around the working folder, or the one of this binary)")
	runDir = fs.String("run-dir", "", "run folder (default .run in the checkout)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: jetsaga %s [flags]\n", fs.Name())
		fs.PrintDefaults()
		fmt.Fprintf(fs.Output(), `environment:
  %s (default 4222), %s (default 55432)
  %s … %s: a service's HTTP address (default 127.0.0.1:8081 … :8084)
  %s … %s: extra flags for one service
  %s: nats-server's profiling port (--profile; off by default)
`, stack.EnvNATSPort, stack.EnvPGPort, stack.EnvAddr("order"), stack.EnvAddr("readmodel"),
			stack.EnvFlags("order"), stack.EnvFlags("readmodel"), stack.EnvNATSProfPort)
	}
	return root, runDir
}

func up(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("up", flag.ContinueOnError)
	root, runDir := stackFlags(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	c, err := stackIn(*root, *runDir, "")
	if err != nil {
		return err
	}
	log := cliLogger()
	was := stack.Running(c)
	if err := stack.Up(ctx, c, log); err != nil {
		return err
	}
	state := "is up"
	if was {
		state = "was already running (same configuration; nothing changed)"
	}
	fmt.Printf(`jetsaga stack %s (run folder %s)
  NATS       %s
  Postgres   %s
  order      %s    inventory %s
  payment    %s    readmodel %s
  logs       %s/logs/
Place an order:  bin/jetsaga place --customer c1 --item sku-1:2:1999 --wait
Watch it:        bin/nats sub --server %s 'order.>' 'inventory.>' 'payment.>'
Stop:            make down
`, state, c.RunDir, c.NATSURL(), c.DatabaseURL(), c.URL("order"), c.URL("inventory"), c.URL("payment"), c.URL("readmodel"), c.RunDir, c.NATSURL())
	return nil
}

func down(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("down", flag.ContinueOnError)
	root, runDir := stackFlags(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	c, err := stackIn(*root, *runDir, "")
	if err != nil {
		return err
	}
	return stack.Down(ctx, c, cliLogger())
}

// supervise runs the four services of the stack and restarts them when they
// exit, until SIGTERM. stack.Up starts it detached.
func supervise(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("supervise", flag.ContinueOnError)
	runDir := fs.String("run-dir", "", "run folder (default .run)")
	root := fs.String("root", "", "the checkout holding bin/ (default: the working directory)")
	if err := parse(fs, args); err != nil {
		return err
	}
	c, err := stackIn(*root, *runDir, "")
	if err != nil {
		return err
	}
	log := cliLogger().Named("supervisor")
	log.Info("supervising", zap.String("run_dir", c.RunDir), zap.Strings("services", stack.Services))
	return stack.Supervise(ctx, log, c.Procs(), 20*time.Second)
}
