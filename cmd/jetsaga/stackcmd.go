package main

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/jetsaga/jetsaga/stack"
)

// stackFlags registers the flags of the commands that run the local stack
// and has their -h name the stack's environment variables too.
func stackFlags(fs *flag.FlagSet) (root, runDir *string, cluster *bool) {
	cluster = fs.Bool("cluster", false, "the cluster stack in .run/cluster (make cluster-up): three nats-servers from deploy/nats/cluster with the per-service identities, streams R3, two instances of every service")
	root = fs.String("root", "", "the jetsaga checkout holding bin/ and deploy/ (default: the one around the working folder, or the one of this binary)")
	runDir = fs.String("run-dir", "", "run folder (default .run in the checkout)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: jetsaga %s [flags]\n", fs.Name())
		fs.PrintDefaults()
		fmt.Fprintf(fs.Output(), `environment:
  %s (default 4222), %s (default 55432)
  %s … %s: a service's HTTP address (default 127.0.0.1:8081 … :8084)
  %s … %s: extra flags for one service
with --cluster:
  %s (default 14333: nodes on 14333-14335), %s (16333), %s (18222)
  %s (default 55433), %s (default 19081: the instances on consecutive ports)
  %s (default 2)
  %s: nats-server's profiling port (--profile; off by default)
`, stack.EnvNATSPort, stack.EnvPGPort, stack.EnvAddr("order"), stack.EnvAddr("readmodel"),
			stack.EnvFlags("order"), stack.EnvFlags("readmodel"),
			stack.EnvClusterNATSPort, stack.EnvClusterRoutePort, stack.EnvClusterMonitorPort,
			stack.EnvClusterPGPort, stack.EnvClusterHTTPPort, stack.EnvClusterInstances, stack.EnvNATSProfPort)
	}
	return root, runDir, cluster
}

// stackOf is the stack a stack command runs: the single-node one (stackIn)
// or, with --cluster, the cluster stack in .run/cluster.
func stackOf(root, runDir string, cluster bool) (stack.Config, error) {
	c, err := stackIn(root, runDir, "")
	if err != nil || !cluster {
		return c, err
	}
	dir := ""
	if runDir != "" {
		dir = c.RunDir
	}
	return stack.ClusterFromEnv(c.Root, dir)
}

func up(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("up", flag.ContinueOnError)
	root, runDir, cluster := stackFlags(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	c, err := stackOf(*root, *runDir, *cluster)
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
	if c.Cluster {
		printCluster(c, state)
		return nil
	}
	fmt.Printf(`jetsaga stack %s (run folder %s)
  NATS       %s
  Postgres   %s
  order      %s    inventory %s
  payment    %s    readmodel %s
  logs       %s/logs/
Dashboard:       %s
Place an order:  bin/jetsaga place --customer c1 --item sku-1:2:1999 --wait
Watch it:        bin/nats sub --server %s 'order.>' 'inventory.>' 'payment.>'
Stop:            make down
`, state, c.RunDir, c.NATSURL(), c.DatabaseURL(), c.URL("order"), c.URL("inventory"), c.URL("payment"), c.URL("readmodel"), c.RunDir, dashboardURL(c), c.NATSURL())
	return nil
}

// dashboardURL is the read model's dashboard on the stack.
func dashboardURL(c stack.Config) string { return c.URL("readmodel") + "/" }

func down(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("down", flag.ContinueOnError)
	root, runDir, cluster := stackFlags(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	c, err := stackOf(*root, *runDir, *cluster)
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
	cluster := fs.Bool("cluster", false, "run the cluster stack's instances (up --cluster)")
	if err := parse(fs, args); err != nil {
		return err
	}
	c, err := stackOf(*root, *runDir, *cluster)
	if err != nil {
		return err
	}
	log := cliLogger().Named("supervisor")
	var names []string
	for _, p := range c.Procs() {
		names = append(names, p.Name)
	}
	log.Info("supervising", zap.String("run_dir", c.RunDir), zap.Strings("processes", names))
	return stack.Supervise(ctx, log, c.Procs(), 20*time.Second)
}

// printCluster says what make cluster-up started and how to reach it.
func printCluster(c stack.Config, state string) {
	fmt.Printf("jetsaga cluster %s (run folder %s)\n", state, c.RunDir)
	for i := 1; i <= stack.Nodes; i++ {
		fmt.Printf("  nats n%d    %s  (monitoring %s, log %s)\n", i, c.NodeURL(i), c.MonitorURL(i), c.LogFile(stack.NodeName(i)))
	}
	fmt.Printf("  streams    R3, made by jetsaga provision as the operator\n")
	fmt.Printf("  Postgres   %s\n", c.DatabaseURL())
	for _, s := range stack.Services {
		fmt.Printf("  %-10s %s  (identity %s)\n", s, strings.Join(c.InstanceURLs(s), " "), s)
	}
	fmt.Printf(`  logs       %s/logs/
Dashboard:       %s
As the reader:   . %s     (NATS_URL, the reader's nkey seed, DATABASE_URL, ORDER_URL, …)
Then:            bin/jetsaga check; bin/jetsaga trace <order-id>
                 bin/jetsaga place --customer c1 --item sku-1:2:1999 --wait
                 bin/jetsaga load --orders 300 --run-dir %s
nats CLI:        bin/nats --server %s --nkey %s --inbox-prefix _INBOX_reader stream report
Stop:            make cluster-down
`, c.RunDir, dashboardURL(c), c.CLIEnvFile(), c.RunDir, c.NATSURL(), c.IdentitySeed("reader"))
}
