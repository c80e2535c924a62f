package testenv

import (
	"testing"

	"github.com/jackc/pgx/v5"
)

func TestWithDatabase(t *testing.T) {
	t.Parallel()
	tests := []struct {
		server string
		want   string
	}{
		{"postgres://u:p@db.example:5433/postgres?sslmode=disable", "postgres://u:p@db.example:5433/jetsaga_test_x?sslmode=disable"},
		{"postgresql://u@h/", "postgresql://u@h/jetsaga_test_x"},
		{"postgres://u@h", "postgres://u@h/jetsaga_test_x"},
		{"postgres://u@h/other?dbname=other&sslmode=disable", "postgres://u@h/jetsaga_test_x?dbname=jetsaga_test_x&sslmode=disable"},
		{"host=h port=5433 user=u dbname=postgres", "host=h port=5433 user=u dbname=postgres dbname=jetsaga_test_x"},
	}
	for _, tt := range tests {
		got, err := withDatabase(tt.server, "jetsaga_test_x")
		if err != nil {
			t.Errorf("withDatabase(%q): %v", tt.server, err)
			continue
		}
		if got != tt.want {
			t.Errorf("withDatabase(%q) = %q, want %q", tt.server, got, tt.want)
		}
		// What counts is what pgx makes of it.
		cfg, err := pgx.ParseConfig(got)
		if err != nil {
			t.Errorf("parse %q: %v", got, err)
			continue
		}
		if cfg.Database != "jetsaga_test_x" {
			t.Errorf("%q connects to database %q", got, cfg.Database)
		}
		orig, err := pgx.ParseConfig(tt.server)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Host != orig.Host || cfg.Port != orig.Port || cfg.User != orig.User || cfg.Password != orig.Password {
			t.Errorf("%q lost the server or user of %q", got, tt.server)
		}
	}
}
