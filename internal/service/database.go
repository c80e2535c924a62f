package service

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// invalidCatalogName is PostgreSQL's SQLSTATE for a database that does not
// exist.
const invalidCatalogName = "3D000"

// permanent returns the error to stop on, said for a user, when err can never
// go away by retrying: a database that does not exist (with the command that
// creates it) or a database URL that does not parse. It returns nil for
// everything else — a server that is down or refuses connections is retried.
func permanent(err error, databaseURL string) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == invalidCatalogName {
		return fmt.Errorf("%w\n  the database does not exist; create it with:\n    %s", err, createdbCommand(databaseURL))
	}
	var parseErr *pgconn.ParseConfigError
	if errors.As(err, &parseErr) {
		return err
	}
	return nil
}

// createdbCommand is the createdb command line that creates the database of
// url on its server.
func createdbCommand(url string) string {
	cfg, err := pgconn.ParseConfig(url)
	if err != nil || cfg.Database == "" {
		return "createdb <name>"
	}
	args := []string{"createdb"}
	if cfg.Host != "" {
		args = append(args, "-h", cfg.Host)
	}
	if cfg.Port != 0 && cfg.Port != 5432 {
		args = append(args, "-p", strconv.Itoa(int(cfg.Port)))
	}
	if cfg.User != "" {
		args = append(args, "-U", cfg.User)
	}
	return strings.Join(append(args, cfg.Database), " ")
}
