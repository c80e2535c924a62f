package main

import (
	"context"
	"flag"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/jetsaga/jetsaga/stack"
)

func up(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("up", flag.ContinueOnError)
	runDir := fs.String("run-dir", "", "run folder (default .run)")
	if err := parse(fs, args); err != nil {
		return err
	}
	c := localStack(absRunDir(*runDir))
	log := cliLogger()
	if err := stack.Up(ctx, c, log); err != nil {
		return err
	}
	fmt.Printf(`jetsaga stack is up (run folder %s)
  NATS       %s
  Postgres   %s
  order      %s    inventory %s
  payment    %s    readmodel %s
  logs       %s/logs/
Place an order:  bin/jetsaga place --customer c1 --item sku-1:2:1999 --wait
Watch it:        bin/nats sub --server %s 'order.>' --headers-only
Stop:            make down
`, c.RunDir, c.NATSURL(), c.DatabaseURL(), c.URL("order"), c.URL("inventory"), c.URL("payment"), c.URL("readmodel"), c.RunDir, c.NATSURL())
	return nil
}

func down(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("down", flag.ContinueOnError)
	runDir := fs.String("run-dir", "", "run folder (default .run)")
	if err := parse(fs, args); err != nil {
		return err
	}
	return stack.Down(ctx, localStack(absRunDir(*runDir)), cliLogger())
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
	c := localStack(absRunDir(*runDir))
	if *root != "" {
		c.Root = *root
	}
	log := cliLogger().Named("supervisor")
	log.Info("supervising", zap.String("run_dir", c.RunDir), zap.Strings("services", stack.Services))
	return stack.Supervise(ctx, log, c.Procs(), 20*time.Second)
}
