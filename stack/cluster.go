package stack

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
)

// The cluster stack (make cluster-up) runs what issue 10 describes on one
// box: the three nats-servers of deploy/nats/cluster, with the dev
// identities of deploy/nats/identities, streams R3 made by jetsaga provision
// under the operator identity, and Instances instances of every service,
// each under its own identity, with --provision-streams=false and
// --replicas 3. It lives in its own run folder (.run/cluster) on its own
// ports, so that it runs beside make up's stack.

// Nodes is the number of nats-servers in the cluster stack.
const Nodes = 3

// ClusterInstances is the default number of instances of each service in
// the cluster stack.
const ClusterInstances = 2

// The environment variables of the cluster stack's configuration. The
// ports are the first of a run: node i (1-3) listens on NATSPort+i-1,
// RoutePort+i-1 and MonitorPort+i-1; the services on HTTPPort onwards, two
// consecutive ports per service (order 19081 and 19082, inventory 19083 and
// 19084, …).
const (
	EnvClusterNATSPort    = "JETSAGA_CLUSTER_NATS_PORT"    // default 14333
	EnvClusterRoutePort   = "JETSAGA_CLUSTER_ROUTE_PORT"   // default 16333
	EnvClusterMonitorPort = "JETSAGA_CLUSTER_MONITOR_PORT" // default 18222
	EnvClusterPGPort      = "JETSAGA_CLUSTER_PG_PORT"      // default 55433
	EnvClusterHTTPPort    = "JETSAGA_CLUSTER_HTTP_PORT"    // default 19081
	EnvClusterInstances   = "JETSAGA_CLUSTER_INSTANCES"    // default 2
)

// ClusterFromEnv reads the cluster stack's configuration from the
// environment; its run folder defaults to Root/.run/cluster.
func ClusterFromEnv(root, runDir string) (Config, error) {
	c := Config{
		Root: root, RunDir: cmp.Or(runDir, filepath.Join(root, ".run", "cluster")), Cluster: true,
		Addrs: map[string]string{}, Flags: map[string]string{},
	}
	for _, p := range []struct {
		name string
		def  int
		into *int
	}{
		{EnvClusterNATSPort, 14333, &c.NATSPort},
		{EnvClusterRoutePort, 16333, &c.RoutePort},
		{EnvClusterMonitorPort, 18222, &c.MonitorPort},
		{EnvClusterPGPort, 55433, &c.PGPort},
		{EnvClusterHTTPPort, 19081, &c.HTTPPort},
	} {
		v, err := envPort(p.name, p.def)
		if err != nil {
			return c, err
		}
		*p.into = v
	}
	c.Instances = ClusterInstances
	if v := os.Getenv(EnvClusterInstances); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 9 {
			return c, fmt.Errorf("%s=%q: want 1 to 9", EnvClusterInstances, v)
		}
		c.Instances = n
	}
	for _, s := range Services {
		c.Addrs[s] = c.InstanceAddr(s, 1)
		c.Flags[s] = os.Getenv(EnvFlags(s))
	}
	return c, nil
}

// InstanceAddr is the HTTP address of instance i (from 1) of a service. On
// the single-node stack there is one instance, at Addrs[service].
func (c Config) InstanceAddr(service string, i int) string {
	if !c.Cluster {
		return c.Addrs[service]
	}
	for k, s := range Services {
		if s == service {
			return fmt.Sprintf("127.0.0.1:%d", c.HTTPPort+k*c.Instances+i-1)
		}
	}
	return ""
}

// InstanceURLs are the base URLs of every instance of a service.
func (c Config) InstanceURLs(service string) []string {
	urls := []string{}
	for i := 1; i <= c.instances(); i++ {
		urls = append(urls, "http://"+c.InstanceAddr(service, i))
	}
	return urls
}

// InstanceName is the process name of instance i of a service: "order" on
// the single-node stack, "order-1", "order-2" in the cluster. It names the
// pid and log files.
func (c Config) InstanceName(service string, i int) string {
	if !c.Cluster {
		return service
	}
	return fmt.Sprintf("%s-%d", service, i)
}

func (c Config) instances() int {
	if !c.Cluster {
		return 1
	}
	return max(c.Instances, 1)
}

// NodeName is the process name of cluster node i (from 1): "nats-1". It
// names the pid and log files.
func NodeName(i int) string { return fmt.Sprintf("nats-%d", i) }

// NodeURL is the client URL of cluster node i (from 1).
func (c Config) NodeURL(i int) string { return fmt.Sprintf("nats://127.0.0.1:%d", c.NATSPort+i-1) }

// MonitorURL is the monitoring endpoint of cluster node i (from 1).
func (c Config) MonitorURL(i int) string {
	return fmt.Sprintf("http://127.0.0.1:%d", c.MonitorPort+i-1)
}

// IdentitySeed is the dev nkey seed file of an identity (a service, reader
// or operator), the cluster stack's credentials.
func (c Config) IdentitySeed(identity string) string {
	return filepath.Join(c.Root, "deploy", "nats", "identities", identity+".nk")
}

// CLIEnvFile is a shell file the cluster stack writes for the CLI: sourced,
// it points jetsaga check, trace, place and load at the cluster as the
// reader.
func (c Config) CLIEnvFile() string { return filepath.Join(c.RunDir, "cli.env") }

// CLIEnv is what CLIEnvFile sets.
func (c Config) CLIEnv() []string {
	return []string{
		"NATS_URL=" + c.NATSURL(),
		"JETSAGA_NATS_NKEY_SEED=" + c.IdentitySeed("reader"),
		"DATABASE_URL=" + c.DatabaseURL(),
		"ORDER_URL=" + c.URL("order"),
		"INVENTORY_URL=" + c.URL("inventory"),
		"READMODEL_URL=" + c.URL("readmodel"),
		"JETSAGA_ADMIN_TOKEN_FILE=" + c.AdminTokenFile(),
	}
}

func (c Config) writeCLIEnv() error {
	var b strings.Builder
	b.WriteString("# The cluster stack, for the jetsaga CLI as the reader: . " + c.CLIEnvFile() + "\n")
	for _, kv := range c.CLIEnv() {
		b.WriteString("export " + kv + "\n")
	}
	return os.WriteFile(c.CLIEnvFile(), []byte(b.String()), 0o644)
}

// clusterEnv is the cluster part of Env.
func (c Config) clusterEnv() []string {
	return []string{
		EnvClusterNATSPort + "=" + strconv.Itoa(c.NATSPort),
		EnvClusterRoutePort + "=" + strconv.Itoa(c.RoutePort),
		EnvClusterMonitorPort + "=" + strconv.Itoa(c.MonitorPort),
		EnvClusterPGPort + "=" + strconv.Itoa(c.PGPort),
		EnvClusterHTTPPort + "=" + strconv.Itoa(c.HTTPPort),
		EnvClusterInstances + "=" + strconv.Itoa(c.instances()),
	}
}

// clusterProcs are the service instances of the cluster stack.
func (c Config) clusterProcs() []Proc {
	var ps []Proc
	for _, s := range Services {
		for i := 1; i <= c.instances(); i++ {
			args := []string{"--provision-streams=false", "--replicas=3"}
			if s == "payment" {
				args = append(args, "--decline-over-cents="+strconv.Itoa(PaymentLimitCents))
			}
			name := c.InstanceName(s, i)
			ps = append(ps, Proc{
				Name: name,
				Path: c.bin(s),
				Args: append(args, strings.Fields(c.Flags[s])...),
				Env: []string{
					"NATS_URL=" + c.NATSURL(),
					"DATABASE_URL=" + c.DatabaseURL(),
					"JETSAGA_HTTP_ADDR=" + c.InstanceAddr(s, i),
					"JETSAGA_LOG_FORMAT=json",
					"JETSAGA_ADMIN_TOKEN_FILE=" + c.AdminTokenFile(),
					"JETSAGA_NATS_NKEY_SEED=" + c.IdentitySeed(s),
				},
				LogFile: c.LogFile(name),
				PidFile: c.PidFile(name),
			})
		}
	}
	return ps
}

// upNodes starts the cluster's nats-servers that do not run. started lists
// the ones it started.
func upNodes(ctx context.Context, c Config, log *zap.Logger) (started []string, err error) {
	for i := 1; i <= Nodes; i++ {
		if alive(c.pidFile(NodeName(i))) {
			continue
		}
		for _, addr := range []string{
			fmt.Sprintf("127.0.0.1:%d", c.NATSPort+i-1),
			fmt.Sprintf("127.0.0.1:%d", c.RoutePort+i-1),
			fmt.Sprintf("127.0.0.1:%d", c.MonitorPort+i-1),
		} {
			if portOpen(addr) {
				return started, fmt.Errorf("nats node %d: %s is in use by something else (set %s, %s or %s)",
					i, addr, EnvClusterNATSPort, EnvClusterRoutePort, EnvClusterMonitorPort)
			}
		}
		if err := StartNode(c, i); err != nil {
			return started, fmt.Errorf("start nats node %d: %w", i, err)
		}
		started = append(started, NodeName(i))
	}
	for i := 1; i <= Nodes; i++ {
		if err := waitPort(ctx, fmt.Sprintf("127.0.0.1:%d", c.NATSPort+i-1), 20*time.Second); err != nil {
			return started, fmt.Errorf("nats node %d did not come up (see %s): %w", i, c.LogFile(NodeName(i)), err)
		}
	}
	if len(started) > 0 {
		log.Info("nats-servers started", zap.Strings("nodes", started), zap.String("urls", c.NATSURL()))
	}
	return started, nil
}

// StartNode starts cluster node i (1-3), detached, from
// deploy/nats/cluster/node<i>.conf with its store under the run folder. The
// command line sets the ports (they override the file's), so that the
// cluster can move off ports another process holds.
func StartNode(c Config, i int) error {
	dir := filepath.Join(c.natsDir(), fmt.Sprintf("n%d", i))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var routes []string
	for j := 1; j <= Nodes; j++ {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", c.RoutePort+j-1))
	}
	args := []string{
		"-c", filepath.Join(c.Root, "deploy", "nats", "cluster", fmt.Sprintf("node%d.conf", i)),
		"-a", "127.0.0.1", "-p", strconv.Itoa(c.NATSPort + i - 1),
		"-m", strconv.Itoa(c.MonitorPort + i - 1),
		"--cluster", fmt.Sprintf("nats://127.0.0.1:%d", c.RoutePort+i-1),
		"--routes", strings.Join(routes, ","),
		"-sd", dir,
	}
	return startDetached(c.bin("nats-server"), args, nil, c.LogFile(NodeName(i)), c.pidFile(NodeName(i)))
}

// provision makes the streams R3 under the operator identity: jetsaga
// provision, as a deployment's admin step runs it.
func provision(ctx context.Context, c Config, log *zap.Logger) error {
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	out, err := os.OpenFile(c.LogFile("provision"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer out.Close()
	cmd := exec.CommandContext(ctx, c.bin("jetsaga"), "provision", "--replicas", "3", "--timeout", "80s",
		"--nats-url", c.NATSURL(), "--nats-nkey-seed", c.IdentitySeed("operator"))
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("jetsaga provision --replicas 3 (see %s): %w", c.LogFile("provision"), err)
	}
	log.Info("streams provisioned, R3, as the operator", zap.String("log", c.LogFile("provision")))
	return nil
}
