package service_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/jetsaga/jetsaga/internal/service"
	"github.com/jetsaga/jetsaga/internal/testenv"
)

func emptySpec() service.Spec {
	return service.Spec{
		Name: "probe", Schema: "probe", Migrations: fstest.MapFS{},
		New: func(*service.Runtime) (service.Participant, error) { return nil, errors.New("not reached") },
	}
}

// A service started without a database URL stops at once, before it listens.
func TestRunWithoutDatabaseURL(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	err := service.Run(ctx, service.Config{HTTPAddr: "127.0.0.1:0", Logger: zaptest.NewLogger(t)}, emptySpec())
	if !errors.Is(err, service.ErrNoDatabaseURL) {
		t.Fatalf("Run = %v, want ErrNoDatabaseURL", err)
	}
}

// A database that does not exist is reported once, with the createdb command
// that makes it, and Run returns instead of retrying.
func TestRunStopsWhenTheDatabaseDoesNotExist(t *testing.T) {
	pgc := testenv.StartPostgres(t)
	nats := testenv.StartNATS(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	err := service.Run(ctx, service.Config{
		NATSURL: nats.URL(), DatabaseURL: pgc.URL("no_such_db"), HTTPAddr: "127.0.0.1:0",
		Logger: zaptest.NewLogger(t),
	}, emptySpec())
	if ctx.Err() != nil {
		t.Fatalf("Run kept retrying until the test's deadline: %v", err)
	}
	want := fmt.Sprintf("createdb -h 127.0.0.1 -p %d -U postgres no_such_db", pgc.Port)
	if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "3D000") {
		t.Fatalf("Run = %v, want the 3D000 error and %q", err, want)
	}
}

// A server that is not there yet is retried: Run is still waiting when the
// context ends.
func TestRunRetriesARefusedConnection(t *testing.T) {
	nats := testenv.StartNATS(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	cfg := service.Config{
		NATSURL: nats.URL(), DatabaseURL: "postgres://postgres@127.0.0.1:1/none?sslmode=disable&connect_timeout=1",
		HTTPAddr: "127.0.0.1:0", Logger: zaptest.NewLogger(t),
	}
	go func() { done <- service.Run(ctx, cfg, emptySpec()) }()
	select {
	case err := <-done:
		t.Fatalf("Run gave up on a refused connection: %v", err)
	case <-time.After(2 * time.Second):
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}
