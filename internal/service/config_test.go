package service_test

import (
	"errors"
	"flag"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jetsaga/jetsaga/internal/service"
)

// Every flag has an environment variable; the command line wins over it.
func TestParseTakesEnvironmentForUnsetFlags(t *testing.T) {
	t.Setenv("NATS_URL", "nats://from-env:4222")
	t.Setenv("JETSAGA_HTTP_ADDR", "127.0.0.1:9999")
	t.Setenv("JETSAGA_INJECT_CRASH_AFTER_COMMIT", "0.25")
	t.Setenv("JETSAGA_ACK_WAIT", "3s")
	var cfg service.Config
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	service.AddFlags(fs, &cfg, "127.0.0.1:8081")
	if err := service.Parse(fs, []string{"--http-addr", "127.0.0.1:1234"}); err != nil {
		t.Fatal(err)
	}
	if cfg.NATSURL != "nats://from-env:4222" || cfg.HTTPAddr != "127.0.0.1:1234" ||
		cfg.Faults.CrashAfterCommit != 0.25 || cfg.AckWait != 3*time.Second || cfg.LogFormat != "json" {
		t.Fatalf("config = %+v", cfg)
	}
}

func TestParseRejectsBadEnvironment(t *testing.T) {
	t.Setenv("JETSAGA_WORKERS", "many")
	var cfg service.Config
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	service.AddFlags(fs, &cfg, "")
	if err := service.Parse(fs, nil); err == nil {
		t.Fatal("JETSAGA_WORKERS=many parsed without an error")
	}
}

// Variables of the bare flag names (TIMEOUT, SEED, ACK_WAIT…) are anyone's:
// only the connection variables and JETSAGA_* are read.
func TestParseIgnoresBareNames(t *testing.T) {
	t.Setenv("ACK_WAIT", "1ms")
	t.Setenv("HTTP_ADDR", "127.0.0.1:9999")
	t.Setenv("LOG_LEVEL", "loud")
	t.Setenv("DATABASE_URL", "postgres://from-env/db")
	var cfg service.Config
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	service.AddFlags(fs, &cfg, "127.0.0.1:8081")
	if err := service.Parse(fs, nil); err != nil {
		t.Fatal(err)
	}
	if cfg.AckWait != 30*time.Second || cfg.HTTPAddr != "127.0.0.1:8081" || cfg.LogLevel != "info" {
		t.Fatalf("bare variables were read: %+v", cfg)
	}
	if cfg.DatabaseURL != "postgres://from-env/db" {
		t.Fatalf("DATABASE_URL not read: %q", cfg.DatabaseURL)
	}
}

// -h names each flag's variable.
func TestUsageNamesEachVariable(t *testing.T) {
	var cfg service.Config
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	service.AddFlags(fs, &cfg, "")
	var out strings.Builder
	fs.SetOutput(&out)
	if err := service.Parse(fs, []string{"-h"}); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("Parse(-h) = %v, want flag.ErrHelp", err)
	}
	fs.VisitAll(func(f *flag.Flag) {
		env := "$" + service.EnvName(f.Name)
		if n := len(regexp.MustCompile(`— \`+env+`\b`).FindAllString(out.String(), -1)); n != 1 {
			t.Errorf("-h does not name %s once for --%s:\n%s", env, f.Name, out.String())
		}
	})
}

// A service without --database-url is a usage error at once.
func TestParseConfigRequiresDatabaseURL(t *testing.T) {
	var cfg service.Config
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	var out strings.Builder
	fs.SetOutput(&out)
	service.AddFlags(fs, &cfg, "")
	if err := service.ParseConfig(fs, &cfg, nil); !errors.Is(err, service.ErrNoDatabaseURL) {
		t.Fatalf("ParseConfig without --database-url = %v, want ErrNoDatabaseURL", err)
	}
	if !strings.Contains(out.String(), "-database-url") {
		t.Errorf("no usage printed: %q", out.String())
	}
	if err := service.ParseConfig(fs, &cfg, []string{"--database-url", "postgres://h/db"}); err != nil {
		t.Fatalf("ParseConfig with --database-url: %v", err)
	}
}

func TestEnvName(t *testing.T) {
	for flag, want := range map[string]string{
		"nats-url": "NATS_URL", "database-url": "DATABASE_URL", "order-url": "ORDER_URL",
		"inventory-url": "INVENTORY_URL", "readmodel-url": "READMODEL_URL",
		"order-database-url": "ORDER_DATABASE_URL", "inventory-database-url": "INVENTORY_DATABASE_URL",
		"payment-database-url": "PAYMENT_DATABASE_URL", "readmodel-database-url": "READMODEL_DATABASE_URL",
		"inject-crash-after-commit": "JETSAGA_INJECT_CRASH_AFTER_COMMIT", "seed": "JETSAGA_SEED",
		"timeout": "JETSAGA_TIMEOUT", "http-addr": "JETSAGA_HTTP_ADDR", "log-level": "JETSAGA_LOG_LEVEL",
	} {
		if got := service.EnvName(flag); got != want {
			t.Errorf("EnvName(%q) = %q, want %q", flag, got, want)
		}
	}
}

func TestNewLogger(t *testing.T) {
	for _, tc := range []struct {
		level, format string
		wantErr       bool
	}{
		{"info", "json", false}, {"debug", "console", false}, {"loud", "json", true}, {"info", "xml", true},
	} {
		if _, err := service.NewLogger(tc.level, tc.format); (err != nil) != tc.wantErr {
			t.Errorf("NewLogger(%q, %q) = %v, wantErr %v", tc.level, tc.format, err, tc.wantErr)
		}
	}
}
