package testenv

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Cluster is a JetStream cluster of embedded nats-servers on loopback, each
// with its own store directory and random ports, routed to each other. A
// node can be stopped and restarted like a single NATS.
type Cluster struct {
	Nodes []*NATS
}

// StartCluster starts size nodes (3 for a JetStream cluster that survives
// the loss of one) and waits until JetStream has a meta leader. They shut
// down when the test ends.
func StartCluster(t testing.TB, size int, o NATSOptions) *Cluster {
	t.Helper()
	// Route ports are chosen up front, as every node lists every route.
	ports := make([]int, size)
	var routes []string
	for i := range ports {
		ports[i] = freePort(t)
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", ports[i]))
	}
	c := &Cluster{}
	for i := range size {
		n := &NATS{
			opts: o, storeDir: t.TempDir(), name: fmt.Sprintf("n%d", i+1),
			cluster: &server.ClusterOpts{Name: "testenv", Host: "127.0.0.1", Port: ports[i]},
			routes:  server.RoutesFromStr(strings.Join(routes, ",")),
		}
		c.Nodes = append(c.Nodes, n)
	}
	// Start them together: JetStream's meta group waits for its peers.
	errs := make(chan error, size)
	for _, n := range c.Nodes {
		go func() {
			srv, err := n.startServer(-1)
			if err == nil {
				n.mu.Lock()
				n.srv, n.port = srv, srv.Addr().(*net.TCPAddr).Port
				n.mu.Unlock()
			}
			errs <- err
		}()
	}
	for range size {
		if err := <-errs; err != nil {
			c.stopAll()
			t.Fatalf("start nats cluster: %v", err)
		}
	}
	t.Cleanup(c.stopAll)
	WaitFor(t, 30*time.Second, "a JetStream meta leader in the cluster", func() bool {
		for _, n := range c.Nodes {
			if s := n.Server(); s == nil || s.JetStreamIsLeader() {
				return true
			}
		}
		return false
	})
	return c
}

func (c *Cluster) stopAll() {
	for _, n := range c.Nodes {
		n.Stop()
	}
}

// freePort is a TCP port of 127.0.0.1 free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// URL lists every node's client URL, comma-separated, as clients take it.
func (c *Cluster) URL() string {
	var urls []string
	for _, n := range c.Nodes {
		urls = append(urls, n.URL())
	}
	return strings.Join(urls, ",")
}

// Connect connects to the cluster (any node, failing over to the others),
// and closes the connection when the test ends.
func (c *Cluster) Connect(t testing.TB, opts ...nats.Option) *nats.Conn {
	t.Helper()
	return connect(t, c.URL(), opts...)
}

// StreamLeader returns the node that leads the named stream, or nil.
func (c *Cluster) StreamLeader(stream string) *NATS {
	for _, n := range c.Nodes {
		if s := n.Server(); s != nil && s.JetStreamIsStreamLeader(server.DEFAULT_GLOBAL_ACCOUNT, stream) {
			return n
		}
	}
	return nil
}

// WaitStreamCurrent waits until the stream has a leader and every replica
// is current, as `nats stream info` would say.
func WaitStreamCurrent(t testing.TB, js jetstream.JetStream, stream string, replicas int) {
	t.Helper()
	WaitFor(t, 30*time.Second, stream+" led, with every replica current", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		s, err := js.Stream(ctx, stream)
		if err != nil {
			return false
		}
		info, err := s.Info(ctx)
		if err != nil || info.Cluster == nil || info.Cluster.Leader == "" || len(info.Cluster.Replicas) != replicas-1 {
			return false
		}
		for _, r := range info.Cluster.Replicas {
			if !r.Current || r.Offline {
				return false
			}
		}
		return true
	})
}
