package service_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/jetsaga/jetsaga/internal/service"
	"github.com/jetsaga/jetsaga/internal/testenv"
)

// startHTTP runs a service that never reaches NATS or Postgres (its HTTP
// server answers while it waits for them) with short HTTP timeouts, and
// returns its address.
func startHTTP(t *testing.T, cfg service.Config) string {
	t.Helper()
	addr := freeAddr(t)
	cfg.Name, cfg.HTTPAddr, cfg.Logger = "http-test", addr, zap.NewNop()
	cfg.NATSURL = "nats://" + freeAddr(t)
	cfg.DatabaseURL = "postgres://postgres@" + freeAddr(t) + "/none?sslmode=disable&connect_timeout=1"
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- service.Run(ctx, cfg, service.Spec{Name: "http-test", Schema: "http_test"}) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("service did not stop")
		}
	})
	testenv.WaitFor(t, 10*time.Second, "the HTTP server", func() bool {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return true
	})
	return addr
}

// closedWithin reports whether the server closes conn within d: a read
// returns EOF (or a reset) rather than timing out.
func closedWithin(conn net.Conn, d time.Duration) bool {
	_ = conn.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, conn)
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}

// A client sending its body one byte every 2 s is cut off by the read
// timeout, and an idle keep-alive connection is closed by the idle timeout
// (issue 10: both stayed open past 70 s).
func TestHTTPTimeouts(t *testing.T) {
	t.Parallel()
	addr := startHTTP(t, service.Config{HTTPReadTimeout: 3 * time.Second, HTTPIdleTimeout: 2 * time.Second})

	slow, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	if _, err := io.WriteString(slow, "POST /orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	cut := false
	for range 10 {
		if _, err := slow.Write([]byte("{")); err != nil {
			cut = true
			break
		}
		if !closedWithin(slow, 2*time.Second) {
			continue
		}
		cut = true
		break
	}
	if !cut || time.Since(start) > 8*time.Second {
		t.Errorf("slow body still open after %v, want it cut off by the 3s read timeout", time.Since(start).Round(time.Second))
	}

	idle, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	if _, err := io.WriteString(idle, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(idle), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if !closedWithin(idle, 6*time.Second) {
		t.Error("idle keep-alive still open after 6s, want it closed by the 2s idle timeout")
	}

	big, err := http.NewRequest(http.MethodGet, "http://"+addr+"/healthz", nil)
	if err != nil {
		t.Fatal(err)
	}
	big.Header.Set("X-Big", strings.Repeat("h", 64<<10))
	if resp, err := http.DefaultClient.Do(big); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("64 KiB of headers: %d, want 431", resp.StatusCode)
		}
	}
}

// The operator endpoints take "Authorization: Bearer <token>", the token of
// --admin-token-file: 401 without it or with another; open without a file.
func TestAdminGuard(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "admin-token")
	if err := os.WriteFile(path, []byte("s3cret-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	guard, err := service.NewAdminGuard(path)
	if err != nil {
		t.Fatal(err)
	}
	open, err := service.NewAdminGuard("")
	if err != nil {
		t.Fatal(err)
	}
	ok := func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }
	for _, tt := range []struct {
		name   string
		guard  *service.AdminGuard
		auth   string
		status int
	}{
		{"no header", guard, "", http.StatusUnauthorized},
		{"wrong token", guard, "Bearer s3cret-tokeN", http.StatusUnauthorized},
		{"prefix of the token", guard, "Bearer s3cret", http.StatusUnauthorized},
		{"not bearer", guard, "Basic s3cret-token", http.StatusUnauthorized},
		{"the token", guard, "Bearer s3cret-token", http.StatusNoContent},
		{"no file: open", open, "", http.StatusNoContent},
	} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodPut, "/stock/a", nil)
		if tt.auth != "" {
			req.Header.Set("Authorization", tt.auth)
		}
		tt.guard.Wrap(ok)(rec, req)
		if rec.Code != tt.status {
			t.Errorf("%s: %d, want %d", tt.name, rec.Code, tt.status)
		}
		if tt.status == http.StatusUnauthorized && rec.Header().Get("WWW-Authenticate") == "" {
			t.Errorf("%s: 401 without WWW-Authenticate", tt.name)
		}
	}
	empty := filepath.Join(t.TempDir(), "empty")
	if err := os.WriteFile(empty, []byte(" \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := service.NewAdminGuard(empty); !errors.Is(err, service.ErrEmptyToken) {
		t.Errorf("empty token file: %v, want ErrEmptyToken", err)
	}
}

func TestClip(t *testing.T) {
	t.Parallel()
	if got := service.Clip("short"); got != "short" {
		t.Errorf("Clip(short) = %q", got)
	}
	got := service.Clip(strings.Repeat("y", 900_000))
	if len(got) > 100 || !strings.HasSuffix(got, "…(900000 bytes)") {
		t.Errorf("Clip of 900000 bytes = %q", got)
	}
}
