package e2e_test

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/internal/pgcluster"
	"github.com/jetsaga/jetsaga/internal/testenv"
)

// The service binaries, built once per test binary for the tests that need
// real processes (a crash is an exit, not a cancelled context).
var binaries struct {
	once sync.Once
	dir  string
	err  error
}

func buildBinaries(t *testing.T) string {
	t.Helper()
	binaries.once.Do(func() {
		out, err := exec.Command("go", "env", "GOMOD").Output()
		if err != nil {
			binaries.err = fmt.Errorf("go env GOMOD: %w", err)
			return
		}
		root := filepath.Dir(strings.TrimSpace(string(out)))
		dir, err := os.MkdirTemp("", "jetsaga-e2e-bin-")
		if err != nil {
			binaries.err = err
			return
		}
		binaries.dir = dir
		cmd := exec.Command("go", "build", "-o", dir+"/", "./cmd/order", "./cmd/inventory", "./cmd/payment", "./cmd/readmodel")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			binaries.err = fmt.Errorf("go build: %w\n%s", err, out)
		}
	})
	if binaries.err != nil {
		t.Fatal(binaries.err)
	}
	return binaries.dir
}

func removeBinaries() {
	if binaries.dir != "" {
		_ = os.RemoveAll(binaries.dir)
	}
}

// procWorld is the saga with each service a real process of its binary,
// against NATS embedded in the test and a throwaway Postgres.
type procWorld struct {
	t     *testing.T
	bin   string
	nats  *testenv.NATS
	js    jetstream.JetStream
	dbURL string
	db    *pgxpool.Pool
	logs  string

	mu    sync.Mutex
	procs map[string]*proc
	runs  int
}

type proc struct {
	cmd  *exec.Cmd
	addr string
	log  string
	done chan struct{} // closed when the process exited
}

func newProcWorld(t *testing.T) *procWorld {
	t.Helper()
	w := &procWorld{t: t, bin: buildBinaries(t), nats: testenv.StartNATS(t), dbURL: testenv.DatabaseURL(t),
		logs: t.TempDir(), procs: map[string]*proc{}}
	w.js = testenv.JetStream(t, w.nats.Connect(t))
	db, err := pgxpool.New(t.Context(), w.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	w.db = db
	t.Cleanup(func() {
		for _, name := range serviceNames {
			w.stop(name)
		}
		if t.Failed() {
			w.dumpLogs()
		}
	})
	return w
}

// start runs a service process with the world's settings plus flags, and
// waits until /readyz answers 200.
func (w *procWorld) start(name string, flags ...string) {
	w.t.Helper()
	port, err := pgcluster.FreePort()
	if err != nil {
		w.t.Fatal(err)
	}
	w.mu.Lock()
	w.runs++
	logFile := filepath.Join(w.logs, fmt.Sprintf("%s-%d.log", name, w.runs))
	w.mu.Unlock()
	out, err := os.Create(logFile)
	if err != nil {
		w.t.Fatal(err)
	}
	defer out.Close()
	cmd := exec.Command(filepath.Join(w.bin, name), flags...)
	cmd.Env = append(os.Environ(),
		"NATS_URL="+w.nats.URL(), "DATABASE_URL="+w.dbURL,
		"JETSAGA_HTTP_ADDR=127.0.0.1:"+strconv.Itoa(port), "JETSAGA_LOG_FORMAT=json", "JETSAGA_LOG_LEVEL=debug",
		"JETSAGA_ACK_WAIT=1s", "JETSAGA_SEED_STOCK=sku-a=100,sku-b=100", "JETSAGA_DECLINE_OVER_CENTS=10000")
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		w.t.Fatal(err)
	}
	p := &proc{cmd: cmd, addr: "127.0.0.1:" + strconv.Itoa(port), log: logFile, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	w.mu.Lock()
	w.procs[name] = p
	w.mu.Unlock()

	client := &http.Client{Timeout: time.Second}
	testenv.WaitFor(w.t, 60*time.Second, name+" ready", func() bool {
		select {
		case <-p.done:
			w.t.Fatalf("%s exited with %d before it was ready:\n%s", name, cmd.ProcessState.ExitCode(), tail(logFile, 20))
		default:
		}
		resp, err := client.Get("http://" + p.addr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// startAll starts the four services, faulty with flags and the others
// without.
func (w *procWorld) startAll(faulty string, flags ...string) {
	w.t.Helper()
	for _, name := range serviceNames {
		if name == faulty {
			w.start(name, flags...)
		} else {
			w.start(name)
		}
	}
}

// waitExit waits for a process to exit on its own and returns its code.
func (w *procWorld) waitExit(name string, timeout time.Duration) int {
	w.t.Helper()
	w.mu.Lock()
	p := w.procs[name]
	w.mu.Unlock()
	select {
	case <-p.done:
	case <-time.After(timeout):
		w.t.Fatalf("%s still running after %s", name, timeout)
	}
	w.mu.Lock()
	delete(w.procs, name)
	w.mu.Unlock()
	return p.cmd.ProcessState.ExitCode()
}

// stop sends SIGTERM and waits for the drain.
func (w *procWorld) stop(name string) {
	w.mu.Lock()
	p := w.procs[name]
	delete(w.procs, name)
	w.mu.Unlock()
	if p == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		if code := p.cmd.ProcessState.ExitCode(); code != 0 {
			w.t.Errorf("%s exited with %d after SIGTERM", name, code)
		}
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		w.t.Errorf("%s did not drain within 30s", name)
	}
}

func (w *procWorld) url(name string) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return "http://" + w.procs[name].addr
}

// metric sums the samples of a Prometheus counter whose line contains all of
// match, from a service's /metrics.
func (w *procWorld) metric(name, counter string, match ...string) float64 {
	w.t.Helper()
	resp, err := http.Get(w.url(name) + "/metrics")
	if err != nil {
		w.t.Fatal(err)
	}
	defer resp.Body.Close()
	return sumCounter(w.t, resp.Body, counter, match...)
}

func sumCounter(t *testing.T, r io.Reader, counter string, match ...string) float64 {
	t.Helper()
	var sum float64
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, counter+"{") && !strings.HasPrefix(line, counter+" ") {
			continue
		}
		ok := true
		for _, m := range match {
			ok = ok && strings.Contains(line, m)
		}
		if !ok {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		sum += v
	}
	return sum
}

func (w *procWorld) dumpLogs() {
	entries, _ := os.ReadDir(w.logs)
	for _, e := range entries {
		w.t.Logf("--- %s (last lines)\n%s", e.Name(), tail(filepath.Join(w.logs, e.Name()), 15))
	}
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// asWorld gives the in-process world's assertions (place, waitTerminal,
// checkInvariants, events, …) to a process world.
func (w *procWorld) asWorld() *world {
	return &world{t: w.t, nats: w.nats, natsURL: w.nats.URL(), js: w.js, reader: w.js, dbURL: w.dbURL, db: w.db, svcs: map[string]*running{},
		urlOf: w.url}
}
