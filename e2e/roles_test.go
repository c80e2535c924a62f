package e2e_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/jetsaga/jetsaga/internal/testenv"
)

// asRole is a database URL whose sessions run as role (SET ROLE at
// connection start, through the role parameter): the tests' superuser stands
// in for each service's login.
func asRole(url, role string) string {
	sep := "?"
	if strings.Contains(url, "?") {
		sep = "&"
	}
	return url + sep + "role=" + role
}

// applyRoles runs deploy/postgres/roles.sql on the database.
func applyRoles(t *testing.T, url string) {
	t.Helper()
	sql, err := os.ReadFile("../deploy/postgres/roles.sql")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, string(sql), pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatalf("roles.sql: %v", err)
	}
}

// The saga runs with each service as its own PostgreSQL role
// (deploy/postgres/roles.sql), and check as the read-only checker; the order
// role can neither write nor read the inventory schema, the checker writes
// nothing.
func TestPostgresRolePerService(t *testing.T) {
	t.Parallel()
	url := testenv.DatabaseURL(t)
	applyRoles(t, url)
	applyRoles(t, url) // idempotent
	w := newWorld(t, worldOptions{
		seedStock: map[string]int{"sku-a": 10}, declineOverCents: declineOver, dbURL: url, pgRoles: true,
	})
	id := w.place("c1", item{"sku-a", 2, 100})
	w.waitTerminal(id)
	w.checkInvariants()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, tc := range []struct {
		role, sql string
		wantCode  string // SQLSTATE; "" for success
	}{
		{"jetsaga_order", `INSERT INTO inventory.stock (sku, initial, available) VALUES ('evil', 1, 1)`, "42501"},
		{"jetsaga_order", `UPDATE inventory.stock SET available = available + 1`, "42501"},
		{"jetsaga_order", `SELECT count(*) FROM inventory.stock`, "42501"},
		{"jetsaga_order", `CREATE TABLE inventory.evil (x int)`, "42501"},
		{"jetsaga_order", `SELECT count(*) FROM orders.orders`, ""},
		{"jetsaga_checker", `SELECT count(*) FROM inventory.stock`, ""},
		{"jetsaga_checker", `SELECT count(*) FROM readmodel.order_views`, ""},
		{"jetsaga_checker", `UPDATE orders.orders SET status = 'CONFIRMED'`, "42501"}, // and 25006 (read-only) when it logs in
	} {
		c, err := pgx.Connect(ctx, asRole(url, tc.role))
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Exec(ctx, tc.sql)
		_ = c.Close(ctx)
		var pe *pgconn.PgError
		switch {
		case tc.wantCode == "" && err != nil:
			t.Errorf("%s: %s: %v", tc.role, tc.sql, err)
		case tc.wantCode != "" && (!errors.As(err, &pe) || pe.Code != tc.wantCode):
			t.Errorf("%s: %s: error %v, want SQLSTATE %s", tc.role, tc.sql, err, tc.wantCode)
		}
	}
}
