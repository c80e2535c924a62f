package service

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/jetsaga/jetsaga/internal/fault"
)

// Config holds the flags every service binary takes (DESIGN.md, "Processes
// and how they start").
type Config struct {
	Name        string // service name; filled from the Spec when empty
	NATSURL     string
	DatabaseURL string
	HTTPAddr    string
	LogLevel    string
	LogFormat   string
	Replicas    int           // stream replicas: 1 on one machine, 3 in a cluster
	Workers     int           // concurrent fetch-and-handle loops per consumer
	MaxAge      time.Duration // stream history kept (0: forever)
	DupWindow   time.Duration // stream duplicate window on Nats-Msg-Id

	// DisconnectGrace is how long the service may be disconnected from
	// NATS (reconnecting) before /healthz fails; default 30s.
	DisconnectGrace time.Duration

	AckWait    time.Duration // consumers' AckWait
	MaxDeliver int           // consumers' MaxDeliver
	Faults     fault.Config  // failure injection (--inject-*)
	// Exit ends the process on an injected crash; default os.Exit.
	Exit func(code int)

	// Logger, when set, is used instead of one built from LogLevel and
	// LogFormat (tests pass zaptest's).
	Logger *zap.Logger
	// OnReady is called once the service is ready, with the HTTP address
	// it listens on (tests listen on 127.0.0.1:0).
	OnReady func(httpAddr string)
}

// AddFlags registers the core flags on fs, with defaults for this service.
// Parse gives each flag an environment variable as well.
func AddFlags(fs *flag.FlagSet, cfg *Config, defaultHTTPAddr string) {
	fs.StringVar(&cfg.NATSURL, "nats-url", "nats://127.0.0.1:4222", "NATS server URL(s), comma-separated")
	fs.StringVar(&cfg.DatabaseURL, "database-url", "", "PostgreSQL URL, e.g. postgres://postgres@127.0.0.1:5432/jetsaga?sslmode=disable (required)")
	fs.StringVar(&cfg.HTTPAddr, "http-addr", defaultHTTPAddr, "address of the HTTP API, /healthz, /readyz and /metrics")
	fs.StringVar(&cfg.LogLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&cfg.LogFormat, "log-format", "json", "json or console")
	fs.IntVar(&cfg.Replicas, "replicas", 1, "stream replicas when this service creates the streams (3 in a cluster)")
	fs.IntVar(&cfg.Workers, "workers", 2, "concurrent handlers per consumer")
	fs.DurationVar(&cfg.MaxAge, "stream-max-age", 0, "history the streams keep when this service creates them (0: forever; keep the inbox at least as long)")
	fs.DurationVar(&cfg.AckWait, "ack-wait", 30*time.Second, "consumers' AckWait: an unacked message is redelivered after this")
	fs.IntVar(&cfg.MaxDeliver, "max-deliver", 10, "deliveries of a failing message before it is dead-lettered to DLQ (JetStream itself redelivers without limit, so nothing is dropped silently)")
	fs.Float64Var(&cfg.Faults.CrashAfterCommit, "inject-crash-after-commit", 0, "probability of exiting (code 3) right after a handler's commit, before the ack; in the relay, after JetStream acked a publish, before the outbox rows are deleted")
	fs.Float64Var(&cfg.Faults.CrashBeforeCommit, "inject-crash-before-commit", 0, "probability of exiting (code 3) right before a handler's commit")
	fs.Float64Var(&cfg.Faults.DuplicatePublish, "inject-duplicate-publish", 0, "probability that the relay publishes an event a second time (same event id)")
	fs.Float64Var(&cfg.Faults.Redeliver, "inject-redeliver", 0, "probability of Nak instead of ack after a commit, so JetStream redelivers a handled message")
	fs.Float64Var(&cfg.Faults.HandlerError, "inject-handler-error", 0, "probability that a handler fails with a transient error (retried with backoff)")
	fs.DurationVar(&cfg.Faults.Delay, "inject-delay", 0, "each message waits this long before it is handled")
	fs.Int64Var(&cfg.Faults.Seed, "inject-seed", 1, "seed of the fault dice (mixed with the process id, so a restarted process does not replay its predecessor's dice)")
	fs.IntVar(&cfg.Faults.Limit, "inject-limit", 0, "each fault fires at most this often per process (0: no limit); 1 makes a window happen exactly once")
	fs.DurationVar(&cfg.DisconnectGrace, "disconnect-grace", 30*time.Second, "how long the service may be disconnected from NATS before /healthz fails (it exits non-zero when the connection is closed for good)")
	fs.DurationVar(&cfg.DupWindow, "duplicate-window", 2*time.Minute, "the streams' duplicate window on Nats-Msg-Id")
}

// EnvName is the environment variable of a flag: --nats-url ↔ NATS_URL.
func EnvName(flagName string) string {
	return strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// Parse parses args into fs; every flag not given on the command line takes
// its environment variable (EnvName) when that is set.
func Parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] {
			return
		}
		if v, ok := os.LookupEnv(EnvName(f.Name)); ok {
			if err := f.Value.Set(v); err != nil {
				errs = append(errs, fmt.Errorf("environment %s=%q: %w", EnvName(f.Name), v, err))
			}
		}
	})
	if len(errs) > 0 {
		return errs[0]
	}
	return nil
}

// NewLogger builds the service logger: JSON or console encoding at a level.
func NewLogger(level, format string) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("log level %q: %w", level, err)
	}
	var zc zap.Config
	switch format {
	case "json", "":
		zc = zap.NewProductionConfig()
		zc.EncoderConfig.TimeKey = "ts"
		zc.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
	case "console":
		zc = zap.NewDevelopmentConfig()
	default:
		return nil, fmt.Errorf("log format %q: want json or console", format)
	}
	zc.Level = zap.NewAtomicLevelAt(lvl)
	zc.Sampling = nil
	zc.DisableStacktrace = true // fields say where; stack traces bury them
	return zc.Build()
}
