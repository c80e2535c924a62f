// Package pg opens PostgreSQL pools bound to one service schema and runs that
// schema's migrations.
//
// Every service owns one schema. A pool from Open sets search_path to it, so
// a service's SQL names its tables unqualified. Migrate creates the schema, the
// shared delivery tables (outbox, inbox, dead_letters) and then the service's own embedded
// migrations, under an advisory lock so that instances starting together do
// not race.
package pg

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"regexp"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/tern/v2/migrate"
)

//go:embed migrations/*.sql
var baseMigrations embed.FS

var schemaName = regexp.MustCompile(`^[a-z][a-z0-9_]{0,62}$`)

// Config tells Open how to connect.
type Config struct {
	URL      string // postgres:// URL or key=value DSN
	Schema   string // the service schema; search_path is set to it
	MaxConns int32  // 0 keeps pgxpool's default
}

// Open returns a pool whose connections use cfg.Schema as search_path. It
// pings the server once so that a wrong URL fails at start.
func Open(ctx context.Context, cfg Config) (*pgxpool.Pool, error) {
	if cfg.URL == "" {
		return nil, errors.New("pg: database URL is empty (set --database-url or DATABASE_URL)")
	}
	if !schemaName.MatchString(cfg.Schema) {
		return nil, fmt.Errorf("pg: schema %q must match %s", cfg.Schema, schemaName)
	}
	pc, err := pgxpool.ParseConfig(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("pg: parse database URL: %w", err)
	}
	pc.ConnConfig.RuntimeParams["search_path"] = cfg.Schema
	if cfg.MaxConns > 0 {
		pc.MaxConns = cfg.MaxConns
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("pg: open pool: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("pg: connect to %s: %w", pc.ConnConfig.Host, err)
	}
	return pool, nil
}

// migrateLock is the advisory lock key held while a schema is migrated. Tern
// holds its own lock per run as well; this one also covers CREATE SCHEMA and
// the two runs back to back.
const migrateLock = int64(0x6a657473616761) // "jetsaga"

// Migrate creates schema (if missing), the delivery tables and then the
// service migrations found in svc (files NNN_name.up.sql at its root).
func Migrate(ctx context.Context, pool *pgxpool.Pool, schema string, svc fs.FS) error {
	if !schemaName.MatchString(schema) {
		return fmt.Errorf("pg: schema %q must match %s", schema, schemaName)
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("migrate %s: acquire: %w", schema, err)
	}
	defer conn.Release()
	c := conn.Conn()

	if _, err := c.Exec(ctx, "SELECT pg_advisory_lock($1)", migrateLock); err != nil {
		return fmt.Errorf("migrate %s: lock: %w", schema, err)
	}
	defer func() {
		// A fresh context: the unlock must happen even when ctx is done, or the
		// pooled connection would keep the lock.
		_, _ = c.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", migrateLock)
	}()

	// Create the schema only when it is missing: PostgreSQL checks the
	// right to create schemas before IF NOT EXISTS, and a service role of
	// deploy/postgres/roles.sql owns its schema without that right.
	var exists bool
	if err := c.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = $1)", schema).Scan(&exists); err != nil {
		return fmt.Errorf("migrate %s: look up schema: %w", schema, err)
	}
	if !exists {
		if _, err := c.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{schema}.Sanitize()); err != nil {
			return fmt.Errorf("migrate %s: create schema: %w", schema, err)
		}
	}
	// search_path is the pool's; set it here too in case the pool was opened
	// without Open.
	if _, err := c.Exec(ctx, "SELECT set_config('search_path', $1, false)", schema); err != nil {
		return fmt.Errorf("migrate %s: search_path: %w", schema, err)
	}
	base, err := fs.Sub(baseMigrations, "migrations")
	if err != nil {
		return fmt.Errorf("migrate %s: %w", schema, err)
	}
	if err := run(ctx, c, schema+".jetsaga_delivery_version", base); err != nil {
		return fmt.Errorf("migrate %s delivery tables: %w", schema, err)
	}
	if svc != nil {
		if err := run(ctx, c, schema+".schema_version", svc); err != nil {
			return fmt.Errorf("migrate %s: %w", schema, err)
		}
	}
	return nil
}

func run(ctx context.Context, c *pgx.Conn, versionTable string, fsys fs.FS) error {
	m, err := migrate.NewMigrator(ctx, c, versionTable)
	if err != nil {
		return fmt.Errorf("new migrator: %w", err)
	}
	if err := m.LoadMigrations(fsys); err != nil {
		return fmt.Errorf("load migrations: %w", err)
	}
	if err := m.Migrate(ctx); err != nil {
		return fmt.Errorf("run migrations: %w", err)
	}
	return nil
}

// InTx runs fn in a transaction and commits it, or rolls back when fn or the
// commit fails.
func InTx(ctx context.Context, pool *pgxpool.Pool, fn func(pgx.Tx) error) error {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// ExecBatch sends every statement queued in b in one round trip, inside tx,
// and returns their command tags in order. It stops at the first error.
func ExecBatch(ctx context.Context, tx pgx.Tx, b *pgx.Batch) ([]pgconn.CommandTag, error) {
	br := tx.SendBatch(ctx, b)
	tags := make([]pgconn.CommandTag, 0, b.Len())
	for range b.Len() {
		tag, err := br.Exec()
		if err != nil {
			_ = br.Close()
			return tags, err
		}
		tags = append(tags, tag)
	}
	return tags, br.Close()
}
