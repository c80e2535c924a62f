package service

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"
)

// The limits of every service's HTTP server (docs/DESIGN.md, "HTTP").
// ReadTimeout covers the headers and the body: a client sending its body one
// byte every two seconds is cut off. WriteTimeout bounds each response; the
// read model's watch streams, long-lived by design, push their own write
// deadline forward before each write (http.ResponseController).
const (
	HTTPReadHeaderTimeout = 5 * time.Second
	HTTPReadTimeout       = 15 * time.Second
	HTTPWriteTimeout      = 30 * time.Second
	HTTPIdleTimeout       = 60 * time.Second
	HTTPMaxHeaderBytes    = 16 << 10
)

// AdminGuard guards the operator endpoints (PUT /stock/{sku}, POST
// /admin/rebuild): a request must carry "Authorization: Bearer <token>",
// the token read from --admin-token-file. Without a file the endpoints are
// open, as on a developer's machine (the service logs a warning at start;
// `jetsaga up` always gives one).
type AdminGuard struct {
	sum  [sha256.Size]byte // of the token; compared in constant time
	open bool
}

// ErrEmptyToken: the admin token file holds nothing but white space.
var ErrEmptyToken = errors.New("admin token file is empty")

// NewAdminGuard reads the token from path (surrounding white space
// trimmed); an empty path gives a guard that lets every request through.
func NewAdminGuard(path string) (*AdminGuard, error) {
	if path == "" {
		return &AdminGuard{open: true}, nil
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read admin token: %w", err)
	}
	token := strings.TrimSpace(string(raw))
	if token == "" {
		return nil, fmt.Errorf("%s: %w", path, ErrEmptyToken)
	}
	return &AdminGuard{sum: sha256.Sum256([]byte(token))}, nil
}

// Open reports whether the guard lets every request through.
func (g *AdminGuard) Open() bool { return g == nil || g.open }

// Wrap returns h behind the guard: 401 with WWW-Authenticate without a
// bearer token or with a wrong one. The tokens' SHA-256 sums are compared
// in constant time, so neither the token's length nor its prefix leaks.
func (g *AdminGuard) Wrap(h http.HandlerFunc) http.HandlerFunc {
	if g.Open() {
		return h
	}
	return func(w http.ResponseWriter, r *http.Request) {
		auth := r.Header.Get("Authorization")
		token, ok := strings.CutPrefix(auth, "Bearer ")
		sum := sha256.Sum256([]byte(strings.TrimSpace(token)))
		if !ok || subtle.ConstantTimeCompare(sum[:], g.sum[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="jetsaga admin"`)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error":"operator endpoint: Authorization: Bearer <the token of --admin-token-file> required"}` + "\n"))
			return
		}
		h(w, r)
	}
}

// MaxEcho bounds how much of a client's invalid value an error message
// quotes: Clip cuts it there, with a marker.
const MaxEcho = 64

// Clip returns s cut to MaxEcho bytes with a marker naming its length, for
// quoting a client's value in an error.
func Clip(s string) string {
	if len(s) <= MaxEcho {
		return s
	}
	return fmt.Sprintf("%s…(%d bytes)", s[:MaxEcho], len(s))
}
