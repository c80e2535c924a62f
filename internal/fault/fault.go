// Package fault injects the failures a saga must survive — crashes around a
// commit, duplicate publishes, redeliveries, transient handler errors and
// delays — at the points where they matter, with seeded dice so that a run
// repeats. A nil *Injector injects nothing and costs one nil check.
package fault

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// Fault names: the fault label of jetsaga_faults_injected_total and the
// "fault" field of the warn log line.
const (
	CrashAfterCommit  = "crash_after_commit"  // handler committed, not acked yet
	CrashAfterPublish = "crash_after_publish" // relay: JetStream acked, rows not deleted yet
	CrashBeforeCommit = "crash_before_commit" // handler ran, not committed
	DuplicatePublish  = "duplicate_publish"   // relay publishes an event twice
	Redeliver         = "redeliver"           // Nak instead of ack after commit
	HandlerError      = "handler_error"       // transient error before the handler runs
	Delay             = "delay"               // wait before handling
)

// Names lists every fault, in the order of the constants above.
func Names() []string {
	return []string{CrashAfterCommit, CrashAfterPublish, CrashBeforeCommit, DuplicatePublish, Redeliver, HandlerError, Delay}
}

// CrashExitCode is the exit code of an injected crash.
const CrashExitCode = 3

// Config holds the fault probabilities, each in [0, 1].
type Config struct {
	CrashAfterCommit  float64 // also covers the relay's publish-ack/delete window
	CrashBeforeCommit float64
	DuplicatePublish  float64
	Redeliver         float64
	HandlerError      float64
	Delay             time.Duration // every message waits this long before it is handled
	Seed              int64         // seeds the dice (with the process id; see New)
	Limit             int           // each fault fires at most this often per process; 0: no limit
	// Previous counts the faults injected in this service's earlier
	// processes (the supervisor reads them from the log of each process
	// that exited and hands them to the next): a crash ends the process that
	// counted it, so jetsaga_faults_injected_total starts from these.
	Previous Counts
}

// Counts holds a number per fault name; as a flag value it reads and prints
// "crash_after_commit=2,redeliver=5".
type Counts map[string]int

// String formats c as name=n pairs, sorted by name.
func (c Counts) String() string {
	names := make([]string, 0, len(c))
	for name := range c {
		names = append(names, name)
	}
	sort.Strings(names)
	parts := make([]string, 0, len(names))
	for _, name := range names {
		parts = append(parts, fmt.Sprintf("%s=%d", name, c[name]))
	}
	return strings.Join(parts, ",")
}

// Set parses name=n pairs separated by commas, each name a fault of Names.
func (c *Counts) Set(s string) error {
	m := Counts{}
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		name, n, ok := strings.Cut(part, "=")
		v, err := strconv.Atoi(n)
		if !ok || err != nil || v < 0 || !slices.Contains(Names(), name) {
			return fmt.Errorf("%q: want fault=count, a fault of %s", part, strings.Join(Names(), ", "))
		}
		m[name] += v
	}
	*c = m
	return nil
}

// Enabled reports whether any fault is switched on.
func (c Config) Enabled() bool {
	return c.CrashAfterCommit > 0 || c.CrashBeforeCommit > 0 || c.DuplicatePublish > 0 ||
		c.Redeliver > 0 || c.HandlerError > 0 || c.Delay > 0
}

// Validate reports a probability outside [0, 1] or a negative delay.
func (c Config) Validate() error {
	for name, p := range map[string]float64{
		"inject-crash-after-commit": c.CrashAfterCommit, "inject-crash-before-commit": c.CrashBeforeCommit,
		"inject-duplicate-publish": c.DuplicatePublish, "inject-redeliver": c.Redeliver,
		"inject-handler-error": c.HandlerError,
	} {
		if !(p >= 0 && p <= 1) {
			return fmt.Errorf("--%s=%v: want a probability between 0 and 1", name, p)
		}
	}
	if c.Delay < 0 {
		return fmt.Errorf("--inject-delay=%s: want a duration ≥ 0", c.Delay)
	}
	if c.Limit < 0 {
		return fmt.Errorf("--inject-limit=%d: want ≥ 0", c.Limit)
	}
	return nil
}

// ErrInjected is the transient error of the handler_error fault.
var ErrInjected = errors.New("injected transient handler error")

// Injector rolls the dice and carries the faults out.
type Injector struct {
	cfg   Config
	log   *zap.Logger
	count *prometheus.CounterVec
	exit  func(code int)

	mu    sync.Mutex
	rng   *rand.Rand
	fired map[string]int
}

// New returns an injector for cfg, or nil when no fault is enabled. exit ends
// the process on a crash (os.Exit in a binary). The counter
// jetsaga_faults_injected_total is registered with reg either way, with every
// fault's label present from the start (at cfg.Previous, else 0), so
// dashboards see zero rather than nothing.
func New(cfg Config, log *zap.Logger, reg prometheus.Registerer, exit func(int)) (*Injector, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	count := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "jetsaga_faults_injected_total",
		Help: "Faults injected by --inject-* flags, by fault.",
	}, []string{"fault"})
	for _, name := range Names() {
		count.WithLabelValues(name).Add(float64(cfg.Previous[name]))
	}
	if reg != nil {
		reg.MustRegister(count)
	}
	if !cfg.Enabled() {
		return nil, nil
	}
	if exit == nil {
		return nil, errors.New("fault: an exit function is required")
	}
	log.Warn("failure injection is on", zap.Float64("crash_after_commit", cfg.CrashAfterCommit),
		zap.Float64("crash_before_commit", cfg.CrashBeforeCommit), zap.Float64("duplicate_publish", cfg.DuplicatePublish),
		zap.Float64("redeliver", cfg.Redeliver), zap.Float64("handler_error", cfg.HandlerError),
		zap.Duration("delay", cfg.Delay), zap.Int64("seed", cfg.Seed), zap.Int("limit", cfg.Limit))
	return &Injector{
		cfg: cfg, log: log, count: count, exit: exit,
		// The dice also take the process id: a service the supervisor
		// restarts after an injected crash must not roll its predecessor's
		// dice again, or it crashes at the same roll every time (e.g. in its
		// first relay round, before it deletes what it republished: a crash
		// loop that never makes progress). Within a process, the same seed
		// gives the same dice.
		rng:   rand.New(rand.NewPCG(uint64(cfg.Seed), 0x6a657473616761^uint64(os.Getpid()))),
		fired: map[string]int{},
	}, nil
}

// Config returns the injector's configuration.
func (in *Injector) Config() Config { return in.cfg }

// roll decides whether fault fires now, with probability p, within the limit.
func (in *Injector) roll(fault string, p float64) bool {
	if p <= 0 {
		return false
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.cfg.Limit > 0 && in.fired[fault] >= in.cfg.Limit {
		return false
	}
	if p < 1 && in.rng.Float64() >= p {
		return false
	}
	in.fired[fault]++
	return true
}

// Target names what a fault hits, for the log line.
type Target struct {
	OrderID, EventID, EventType string
}

func (in *Injector) record(fault string, t Target) {
	in.count.WithLabelValues(fault).Inc()
	in.log.Warn("fault injected", zap.String("fault", fault), zap.String("order_id", t.OrderID),
		zap.String("event_id", t.EventID), zap.String("event_type", t.EventType))
}

func (in *Injector) crash(fault string, t Target) {
	in.record(fault, t)
	_ = in.log.Sync()
	in.exit(CrashExitCode)
}

// BeforeHandle applies the delay and the handler_error fault.
func (in *Injector) BeforeHandle(ctx context.Context, t Target) error {
	if in == nil {
		return nil
	}
	if in.cfg.Delay > 0 {
		in.record(Delay, t)
		timer := time.NewTimer(in.cfg.Delay)
		select {
		case <-ctx.Done():
			timer.Stop()
		case <-timer.C:
		}
	}
	if in.roll(HandlerError, in.cfg.HandlerError) {
		in.record(HandlerError, t)
		return ErrInjected
	}
	return nil
}

// BeforeCommit crashes the process before a handler's commit.
func (in *Injector) BeforeCommit(t Target) {
	if in != nil && in.roll(CrashBeforeCommit, in.cfg.CrashBeforeCommit) {
		in.crash(CrashBeforeCommit, t)
	}
}

// AfterCommit crashes the process after a handler's commit and before its
// ack, or reports that the message should be redelivered (Nak, not ack).
func (in *Injector) AfterCommit(t Target) (redeliver bool) {
	if in == nil {
		return false
	}
	if in.roll(CrashAfterCommit, in.cfg.CrashAfterCommit) {
		in.crash(CrashAfterCommit, t)
	}
	if in.roll(Redeliver, in.cfg.Redeliver) {
		in.record(Redeliver, t)
		return true
	}
	return false
}

// AfterPublish crashes the process after JetStream acked a relay round and
// before its outbox rows are deleted.
func (in *Injector) AfterPublish(t Target) {
	if in != nil && in.roll(CrashAfterPublish, in.cfg.CrashAfterCommit) {
		in.crash(CrashAfterPublish, t)
	}
}

// Duplicate reports whether the relay publishes this event a second time.
func (in *Injector) Duplicate(t Target) bool {
	if in != nil && in.roll(DuplicatePublish, in.cfg.DuplicatePublish) {
		in.record(DuplicatePublish, t)
		return true
	}
	return false
}
