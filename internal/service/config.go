package service

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/jetsaga/jetsaga/internal/access"
	"github.com/jetsaga/jetsaga/internal/fault"
)

// Config holds the flags every service binary takes (docs/DESIGN.md, "Processes
// and how they start").
type Config struct {
	Name    string // service name; filled from the Spec when empty
	NATSURL string
	// NATS is the service's NATS identity and TLS files; its inbox prefix
	// defaults to _INBOX_<service> (access.InboxPrefix).
	NATS access.Client
	// StreamsByOperator says the streams are made by jetsaga provision,
	// under the operator identity (--provision-streams=false): the service
	// only creates its own consumers. By default (the single-node dev
	// stack) every service creates or updates every stream at start; with
	// per-service identities a service may not touch streams.
	StreamsByOperator bool
	DatabaseURL       string
	HTTPAddr          string
	LogLevel          string
	LogFormat         string
	Replicas          int           // stream replicas: 1 on one machine, 3 in a cluster
	Workers           int           // batches handled at once by the service's consumer loop
	Batch             int           // most messages per batch, one transaction each
	DBMaxConns        int           // Postgres pool size
	RelayBatch        int           // outbox rows per relay round
	RelayWindow       int           // relay publishers in flight at once
	RelayAtomicMin    int           // events for one stream a relay publisher sends as one atomic batch (-1: never)
	RelayDeleteEvery  time.Duration // how long acked outbox rows wait to be deleted together (0: at once)
	InboxKeep         time.Duration // how long inbox rows are kept
	MaxAge            time.Duration // stream history kept (0: forever)
	MaxMsgs           int64         // messages each event stream keeps (0: all)
	DupWindow         time.Duration // stream duplicate window on Nats-Msg-Id
	PProf             bool          // serve net/http/pprof under /debug/pprof/ on HTTPAddr
	// AdminTokenFile holds the bearer token of the operator endpoints
	// (PUT /stock, POST /admin/rebuild); "" leaves them open.
	AdminTokenFile string
	// The HTTP server's read (headers and body), write and idle timeouts;
	// zero takes HTTPReadTimeout, HTTPWriteTimeout, HTTPIdleTimeout.
	HTTPReadTimeout, HTTPWriteTimeout, HTTPIdleTimeout time.Duration

	// DisconnectGrace is how long the service may be disconnected from
	// NATS (reconnecting) before /healthz fails; default 30s.
	DisconnectGrace time.Duration

	AckWait    time.Duration // consumers' AckWait
	MaxDeliver int           // consumers' MaxDeliver
	RetryMax   time.Duration // cap on the wait before a failed message is tried again
	Faults     fault.Config  // failure injection (--inject-*)
	// Exit ends the process on an injected crash; default os.Exit.
	Exit func(code int)

	// Logger, when set, is used instead of one built from LogLevel and
	// LogFormat (tests pass zaptest's).
	Logger *zap.Logger
	// TracerProvider traces the service (HTTP requests, consumed messages,
	// outbox publishes); nil turns tracing off. Main builds it from the
	// OTEL_* environment (telemetry.FromEnv); tests pass their own.
	TracerProvider trace.TracerProvider
	tracing        []string // the exporters Main set up, for the ready log
	// OnReady is called once the service is ready, with the HTTP address
	// it listens on (tests listen on 127.0.0.1:0).
	OnReady func(httpAddr string)
}

// ErrNoDatabaseURL is the usage error of a service started without
// --database-url.
var ErrNoDatabaseURL = errors.New("--database-url (or DATABASE_URL) is required, e.g. postgres://postgres@127.0.0.1:5432/jetsaga?sslmode=disable")

// Validate reports a required flag that is missing.
func (c Config) Validate() error {
	if strings.TrimSpace(c.DatabaseURL) == "" {
		return ErrNoDatabaseURL
	}
	return c.NATS.Validate()
}

// ParseConfig parses a service binary's flags (Parse) and checks that the
// required ones are there; when one is missing it prints the flags and
// returns the usage error, for the binary to print and exit 2 at once.
func ParseConfig(fs *flag.FlagSet, cfg *Config, args []string) error {
	if err := Parse(fs, args); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		fs.Usage()
		return err
	}
	return nil
}

// AddFlags registers the core flags on fs, with defaults for this service.
// Parse gives each flag an environment variable as well.
func AddFlags(fs *flag.FlagSet, cfg *Config, defaultHTTPAddr string) {
	fs.StringVar(&cfg.NATSURL, "nats-url", "nats://127.0.0.1:4222", "NATS server URL(s), comma-separated")
	cfg.NATS.AddFlags(fs, "")
	fs.Var((*notBool)(&cfg.StreamsByOperator), "provision-streams", "create or update every stream at start (false when jetsaga provision makes them under the operator identity: a service identity may not)")
	fs.StringVar(&cfg.DatabaseURL, "database-url", "", "PostgreSQL URL, e.g. postgres://postgres@127.0.0.1:5432/jetsaga?sslmode=disable (required)")
	fs.StringVar(&cfg.HTTPAddr, "http-addr", defaultHTTPAddr, "address of the HTTP API, /healthz, /readyz and /metrics")
	fs.StringVar(&cfg.LogLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&cfg.LogFormat, "log-format", "json", "json or console")
	fs.IntVar(&cfg.Replicas, "replicas", 1, "stream replicas when this service creates the streams (3 in a cluster)")
	fs.IntVar(&cfg.Workers, "workers", 1, "batches handled at once by the service's consumer loop (all its consumers), each in its own transaction")
	fs.IntVar(&cfg.Batch, "batch", 256, "most messages handled in one transaction (set-based, or a savepoint each when that fails); what has arrived is taken, up to this many")
	fs.IntVar(&cfg.DBMaxConns, "db-max-conns", 16, "Postgres connections in the service's pool")
	fs.IntVar(&cfg.RelayBatch, "relay-batch", 256, "outbox rows the relay locks, publishes and deletes per round")
	fs.IntVar(&cfg.RelayWindow, "relay-window", 4, "relay publishers in flight at once, each waiting for its acks")
	fs.DurationVar(&cfg.RelayDeleteEvery, "relay-delete-every", 50*time.Millisecond, "how long the relay lets the outbox rows of acked events wait to delete them together, in one statement (one commit) for all acked meanwhile; 0: as soon as they are acked")
	fs.IntVar(&cfg.RelayAtomicMin, "relay-atomic-min", 16, "a relay publisher holding this many events or more for one stream sends them as one JetStream atomic batch (stored with one fsync, acked once) where the stream allows it; -1: always one by one")
	fs.DurationVar(&cfg.InboxKeep, "inbox-retention", 7*24*time.Hour, "how long the inbox keeps a handled event's id (its idempotency record); older rows are pruned in small batches. Keep it far longer than anything can redeliver or republish an event; past it the business keys are the guard")
	fs.DurationVar(&cfg.MaxAge, "stream-max-age", 0, "history the streams keep when this service creates them (0: forever; keep the inbox at least as long)")
	fs.Int64Var(&cfg.MaxMsgs, "stream-max-msgs", 0, "messages each event stream (ORDERS, INVENTORY, PAYMENTS) keeps when this service creates them, oldest dropped first (0: all); keep it far above any backlog: a message dropped before its consumers read it is lost to them")
	fs.DurationVar(&cfg.AckWait, "ack-wait", 30*time.Second, "consumers' AckWait: an unacked message is redelivered after this")
	fs.DurationVar(&cfg.RetryMax, "retry-max", 30*time.Second, "cap on the wait before a message whose handling failed is tried again (the wait starts at 250ms and doubles with each delivery)")
	fs.IntVar(&cfg.MaxDeliver, "max-deliver", 10, "deliveries of a failing message before it is dead-lettered to DLQ (JetStream itself redelivers without limit, so nothing is dropped silently)")
	fs.Float64Var(&cfg.Faults.CrashAfterCommit, "inject-crash-after-commit", 0, "probability of exiting (code 3) right after a handler's commit, before the ack; in the relay, after JetStream acked a publish, before the outbox rows are deleted")
	fs.Float64Var(&cfg.Faults.CrashBeforeCommit, "inject-crash-before-commit", 0, "probability of exiting (code 3) right before a handler's commit")
	fs.Float64Var(&cfg.Faults.DuplicatePublish, "inject-duplicate-publish", 0, "probability that the relay publishes an event a second time (same event id)")
	fs.Float64Var(&cfg.Faults.Redeliver, "inject-redeliver", 0, "probability of Nak instead of ack after a commit, so JetStream redelivers a handled message")
	fs.Float64Var(&cfg.Faults.HandlerError, "inject-handler-error", 0, "probability that a handler fails with a transient error (retried with backoff)")
	fs.DurationVar(&cfg.Faults.Delay, "inject-delay", 0, "each message waits this long before it is handled")
	fs.Int64Var(&cfg.Faults.Seed, "inject-seed", 1, "seed of the fault dice (mixed with the process id, so a restarted process does not replay its predecessor's dice)")
	fs.IntVar(&cfg.Faults.Limit, "inject-limit", 0, "each fault fires at most this often per process (0: no limit); 1 makes a window happen exactly once")
	fs.Var(&cfg.Faults.Previous, "inject-previous", "faults injected in this service's earlier processes, e.g. crash_after_commit=2,redeliver=5: jetsaga_faults_injected_total starts from them (the supervisor of make up sets it on each restart)")
	fs.DurationVar(&cfg.DisconnectGrace, "disconnect-grace", 30*time.Second, "how long the service may be disconnected from NATS before /healthz fails (it exits non-zero when the connection is closed for good)")
	fs.DurationVar(&cfg.DupWindow, "duplicate-window", 2*time.Minute, "the streams' duplicate window on Nats-Msg-Id")
	fs.BoolVar(&cfg.PProf, "pprof", false, "serve Go's profiles (net/http/pprof) under /debug/pprof/ on the HTTP address")
	fs.DurationVar(&cfg.HTTPReadTimeout, "http-read-timeout", HTTPReadTimeout, "how long a client may take to send a request, headers and body (a slow body is cut off)")
	fs.DurationVar(&cfg.HTTPWriteTimeout, "http-write-timeout", HTTPWriteTimeout, "how long a response may take to write (watch streams extend theirs as they go)")
	fs.DurationVar(&cfg.HTTPIdleTimeout, "http-idle-timeout", HTTPIdleTimeout, "how long an idle keep-alive connection is kept open")
	fs.StringVar(&cfg.AdminTokenFile, "admin-token-file", "", "file holding the bearer token the operator endpoints (PUT /stock, POST /admin/rebuild) require (Authorization: Bearer <token>); without one they are open, for development only")
}

// notBool is a boolean flag that sets the negation of its variable.
type notBool bool

func (b *notBool) Set(s string) error {
	v, err := strconv.ParseBool(s)
	if err != nil {
		return err
	}
	*b = notBool(!v)
	return nil
}
func (b *notBool) String() string {
	if b == nil {
		return "true"
	}
	return strconv.FormatBool(!bool(*b))
}
func (b *notBool) IsBoolFlag() bool { return true }

// EnvPrefix starts the environment variable of every flag but the standard
// connection ones, so that an unrelated TIMEOUT or SEED in the shell changes
// nothing.
const EnvPrefix = "JETSAGA_"

// connectionFlags keep the environment variables everyone already sets, and
// jetsaga check's per-service databases their likes (ORDER_DATABASE_URL).
var connectionFlags = map[string]bool{
	"nats-url": true, "database-url": true, "order-url": true, "inventory-url": true, "readmodel-url": true,
	"order-database-url": true, "inventory-database-url": true, "payment-database-url": true, "readmodel-database-url": true,
}

// EnvName is the environment variable of a flag: --nats-url ↔ NATS_URL,
// --ack-wait ↔ JETSAGA_ACK_WAIT.
func EnvName(flagName string) string {
	name := strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
	if connectionFlags[flagName] {
		return name
	}
	return EnvPrefix + name
}

// Parse parses args into fs; every flag not given on the command line takes
// its environment variable (EnvName) when that is set. Each flag's usage
// names its variable, so -h lists them.
func Parse(fs *flag.FlagSet, args []string) error {
	fs.VisitAll(func(f *flag.Flag) {
		if env := "$" + EnvName(f.Name); !strings.HasSuffix(f.Usage, env) {
			f.Usage += " — " + env
		}
	})
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
				errs = append(errs, &EnvError{Name: EnvName(f.Name), Value: v, Err: err})
			}
		}
	})
	if len(errs) > 0 {
		return errs[0]
	}
	return nil
}

// EnvError is an environment variable whose value its flag does not take.
// Unlike a bad command-line flag, which the flag package has printed with
// the usage already, it is for the caller to print.
type EnvError struct {
	Name, Value string
	Err         error
}

func (e *EnvError) Error() string {
	return fmt.Sprintf("environment %s=%q: %v", e.Name, e.Value, e.Err)
}
func (e *EnvError) Unwrap() error { return e.Err }

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
