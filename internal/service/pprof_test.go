package service_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/jetsaga/jetsaga/internal/service"
	"github.com/jetsaga/jetsaga/internal/testenv"
)

// TestPProf: --pprof serves the profiles on the service's HTTP address, and
// without it /debug/pprof/ is not there. The service never gets NATS or
// Postgres here: the HTTP server answers while it waits for them.
func TestPProf(t *testing.T) {
	t.Parallel()
	for _, on := range []bool{true, false} {
		addr := freeAddr(t)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		cfg := service.Config{
			Name: "pprof-test", NATSURL: "nats://" + freeAddr(t), DatabaseURL: "postgres://postgres@" + freeAddr(t) + "/none?sslmode=disable&connect_timeout=1",
			HTTPAddr: addr, PProf: on, Logger: zap.NewNop(),
		}
		go func() { done <- service.Run(ctx, cfg, service.Spec{Name: "pprof-test", Schema: "pprof_test"}) }()
		var code int
		var body string
		testenv.WaitFor(t, 10*time.Second, "the HTTP server", func() bool {
			resp, err := http.Get("http://" + addr + "/debug/pprof/cmdline")
			if err != nil {
				return false
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			code, body = resp.StatusCode, string(b)
			return true
		})
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("service did not stop")
		}
		if on && (code != http.StatusOK || !strings.Contains(body, "service.test")) {
			t.Errorf("--pprof: /debug/pprof/cmdline = %d %q, want 200 with the command line", code, body)
		}
		if !on && code == http.StatusOK {
			t.Errorf("without --pprof: /debug/pprof/cmdline = %d %q, want no profile", code, body)
		}
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
