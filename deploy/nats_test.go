// Package deploy_test checks the deployment files that cannot run on the
// CI machine as they are (fixed ports, TLS files): they are parsed by
// nats-server's own parser and, rewritten to free ports and a test CA, run.
package deploy_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/internal/access"
	"github.com/jetsaga/jetsaga/internal/stream"
	"github.com/jetsaga/jetsaga/internal/testenv"
)

// Every node configuration parses, is a member of one 3-route cluster,
// fsyncs always, serves monitoring on loopback only and knows every
// identity.
func TestClusterConfigsParse(t *testing.T) {
	t.Parallel()
	for i := 1; i <= 3; i++ {
		opts, err := server.ProcessConfigFile(fmt.Sprintf("nats/cluster/node%d.conf", i))
		if err != nil {
			t.Fatalf("node%d.conf: %v", i, err)
		}
		switch {
		case opts.ServerName != fmt.Sprintf("n%d", i):
			t.Errorf("node%d: server_name %q", i, opts.ServerName)
		case !opts.SyncAlways:
			t.Errorf("node%d: sync_interval is not always", i)
		case opts.HTTPHost != "127.0.0.1":
			t.Errorf("node%d: monitoring on %q, want 127.0.0.1", i, opts.HTTPHost)
		case opts.Cluster.Name != "jetsaga" || len(opts.Routes) != 3:
			t.Errorf("node%d: cluster %q with %d routes", i, opts.Cluster.Name, len(opts.Routes))
		case len(opts.Nkeys) != len(access.Identities()):
			t.Errorf("node%d: %d users, want %d", i, len(opts.Nkeys), len(access.Identities()))
		case opts.JetStreamMaxStore <= 0:
			t.Errorf("node%d: no max_file_store", i)
		}
	}
}

// The TLS variants, with a CA from make-test-ca.sh and free ports, make a
// 3-node cluster whose routes and clients are TLS: a client with the order
// identity's certificate and nkey provisions nothing, the operator
// provisions R3 streams, a client without a certificate is refused.
func TestTLSClusterWithTestCA(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl is not installed")
	}
	dir := t.TempDir()
	tlsDir := filepath.Join(dir, "tls")
	if out, err := exec.Command("nats/make-test-ca.sh", tlsDir).CombinedOutput(); err != nil {
		t.Fatalf("make-test-ca.sh: %v\n%s", err, out)
	}
	// Rewrite the three configurations: free ports, absolute TLS paths.
	ports := map[string]string{}
	for _, base := range []int{14333, 16333, 18222} {
		for i := range 3 {
			ports[fmt.Sprint(base+i)] = fmt.Sprint(freePort(t))
		}
	}
	auth, err := filepath.Abs("nats/identities/auth.conf")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"common.conf", "node1-tls.conf", "node2-tls.conf", "node3-tls.conf"} {
		raw, err := os.ReadFile(filepath.Join("nats/cluster", f))
		if err != nil {
			t.Fatal(err)
		}
		s := strings.ReplaceAll(string(raw), `"tls/`, `"`+tlsDir+`/`)
		s = strings.ReplaceAll(s, `"../identities/auth.conf"`, `"auth.conf"`)
		for from, to := range ports {
			s = strings.ReplaceAll(s, ":"+from, ":"+to)
		}
		if err := os.WriteFile(filepath.Join(dir, f), []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if raw, err := os.ReadFile(auth); err != nil {
		t.Fatal(err)
	} else if err := os.WriteFile(filepath.Join(dir, "auth.conf"), raw, 0o600); err != nil {
		t.Fatal(err)
	}
	var urls []string
	for i := 1; i <= 3; i++ {
		opts, err := server.ProcessConfigFile(filepath.Join(dir, fmt.Sprintf("node%d-tls.conf", i)))
		if err != nil {
			t.Fatalf("node%d-tls.conf: %v", i, err)
		}
		if opts.TLSConfig == nil || opts.TLSConfig.ClientAuth != tls.RequireAndVerifyClientCert || opts.Cluster.TLSConfig == nil {
			t.Fatalf("node%d-tls: client TLS %+v, route TLS %v", i, opts.TLSConfig, opts.Cluster.TLSConfig != nil)
		}
		opts.StoreDir = t.TempDir()
		opts.NoSigs, opts.NoLog = true, true
		srv, err := server.NewServer(opts)
		if err != nil {
			t.Fatal(err)
		}
		go srv.Start()
		t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
		urls = append(urls, fmt.Sprintf("tls://127.0.0.1:%d", opts.Port))
	}
	url := strings.Join(urls, ",")
	connect := func(identity string, withCert bool) (*nats.Conn, error) {
		c := access.Client{
			NkeySeedFile: filepath.Join("nats/identities", access.SeedFile(identity)),
			TLSCA:        filepath.Join(tlsDir, "ca.pem"), InboxPrefix: access.InboxPrefix(identity),
		}
		if withCert {
			c.TLSCert, c.TLSKey = filepath.Join(tlsDir, identity+"-cert.pem"), filepath.Join(tlsDir, identity+"-key.pem")
		}
		opts, err := c.Options()
		if err != nil {
			return nil, err
		}
		return nats.Connect(url, append(opts, nats.RetryOnFailedConnect(false), nats.Timeout(5*time.Second))...)
	}
	if nc, err := connect("order", false); err == nil {
		nc.Close()
		t.Error("a client without a certificate connected")
	}
	var nc *nats.Conn
	testenv.WaitFor(t, 30*time.Second, "the operator connected over mTLS", func() bool {
		nc, err = connect(access.Operator, true)
		return err == nil
	})
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 60*time.Second, "R3 streams provisioned over TLS routes", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return stream.Ensure(ctx, js, stream.Config{Replicas: 3}) == nil
	})
	testenv.WaitStreamCurrent(t, js, stream.Orders, 3)
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
