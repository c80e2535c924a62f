package service_test

import (
	"flag"
	"testing"
	"time"

	"github.com/jetsaga/jetsaga/internal/service"
)

// Every flag has an environment variable; the command line wins over it.
func TestParseTakesEnvironmentForUnsetFlags(t *testing.T) {
	t.Setenv("NATS_URL", "nats://from-env:4222")
	t.Setenv("HTTP_ADDR", "127.0.0.1:9999")
	t.Setenv("INJECT_CRASH_AFTER_COMMIT", "0.25")
	t.Setenv("ACK_WAIT", "3s")
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
	t.Setenv("WORKERS", "many")
	var cfg service.Config
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	service.AddFlags(fs, &cfg, "")
	if err := service.Parse(fs, nil); err == nil {
		t.Fatal("WORKERS=many parsed without an error")
	}
}

func TestEnvName(t *testing.T) {
	for flag, want := range map[string]string{"nats-url": "NATS_URL", "inject-crash-after-commit": "INJECT_CRASH_AFTER_COMMIT", "seed": "SEED"} {
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
