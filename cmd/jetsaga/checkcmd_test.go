package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/jetsaga/jetsaga/internal/service"
	"github.com/jetsaga/jetsaga/internal/testenv"
	"github.com/jetsaga/jetsaga/inventory"
	"github.com/jetsaga/jetsaga/order"
	"github.com/jetsaga/jetsaga/payment"
	"github.com/jetsaga/jetsaga/readmodel"
)

// Each service's database is its --<service>-database-url, else its
// environment variable, else --database-url: one database for all four
// unless told otherwise.
func TestCheckDatabaseURLs(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want [4]string // order, inventory, payment, readmodel
	}{
		{
			name: "one database", args: []string{"--database-url", "postgres://h/all"},
			want: [4]string{"postgres://h/all", "postgres://h/all", "postgres://h/all", "postgres://h/all"},
		},
		{
			name: "one database from the environment", env: map[string]string{"DATABASE_URL": "postgres://e/all"},
			want: [4]string{"postgres://e/all", "postgres://e/all", "postgres://e/all", "postgres://e/all"},
		},
		{
			name: "a database per service",
			args: []string{"--database-url", "postgres://h/all", "--order-database-url", "postgres://o/orders",
				"--inventory-database-url", "postgres://i/inventory", "--payment-database-url", "postgres://p/payment",
				"--readmodel-database-url", "postgres://r/readmodel"},
			want: [4]string{"postgres://o/orders", "postgres://i/inventory", "postgres://p/payment", "postgres://r/readmodel"},
		},
		{
			name: "some from the environment, the flag first",
			args: []string{"--database-url", "postgres://h/all", "--payment-database-url", "postgres://flag/payment"},
			env: map[string]string{"PAYMENT_DATABASE_URL": "postgres://env/payment", "READMODEL_DATABASE_URL": "postgres://env/readmodel",
				"JETSAGA_ORDER_DATABASE_URL": "postgres://not/this"},
			want: [4]string{"postgres://h/all", "postgres://h/all", "postgres://flag/payment", "postgres://env/readmodel"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, name := range []string{"DATABASE_URL", "ORDER_DATABASE_URL", "INVENTORY_DATABASE_URL", "PAYMENT_DATABASE_URL", "READMODEL_DATABASE_URL"} {
				t.Setenv(name, tc.env[name]) // empty: as good as unset for these flags
			}
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			fs := flag.NewFlagSet("check", flag.ContinueOnError)
			var (
				ep  endpoints
				sdb serviceDatabases
			)
			ep.flags(fs, "database-url")
			sdb.flags(fs)
			if err := parse(fs, tc.args); err != nil {
				t.Fatal(err)
			}
			o, i, p, r := sdb.urls(ep.databaseURL)
			if got := [4]string{o, i, p, r}; got != tc.want {
				t.Errorf("databases %q, want %q", got, tc.want)
			}
		})
	}
}

// jetsaga check against a saga whose four services each have a database of
// their own, payment's on a second PostgreSQL server: it passes after real
// sagas, and reports exactly the violation made in one database.
func TestCheckDatabasePerService(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	second := testenv.StartPostgres(t)
	if err := second.CreateDatabase(ctx, "jetsaga_payment"); err != nil {
		t.Fatal(err)
	}
	urls := map[string]string{
		"order":     testenv.DatabaseURL(t),
		"inventory": testenv.DatabaseURL(t),
		"payment":   second.URL("jetsaga_payment"),
		"readmodel": testenv.DatabaseURL(t),
	}
	n := testenv.StartNATS(t)
	const declineOver = 50_000
	base := map[string]string{}
	for name, spec := range map[string]service.Spec{
		"order":     order.Spec(order.Config{}),
		"inventory": inventory.Spec(inventory.Config{SeedStock: map[string]int{"sku-1": 100, "sku-2": 5}}),
		"payment":   payment.Spec(payment.Config{DeclineOverCents: declineOver, Seed: 1}),
		"readmodel": readmodel.Spec(readmodel.Config{}),
	} {
		base[name] = testenv.RunService(t, service.Config{NATSURL: n.URL(), DatabaseURL: urls[name]}, spec)
	}
	pools := map[string]*pgxpool.Pool{}
	for name, url := range urls {
		p, err := pgxpool.New(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Close)
		pools[name] = p
	}

	// Each database holds its service's schema and no other.
	schemaOf := map[string]string{"order": "orders", "inventory": "inventory", "payment": "payment", "readmodel": "readmodel"}
	for name, p := range pools {
		var have []string
		rows, err := p.Query(ctx, `SELECT schema_name FROM information_schema.schemata WHERE schema_name = ANY($1) ORDER BY 1`,
			[]string{"orders", "inventory", "payment", "readmodel"})
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				t.Fatal(err)
			}
			have = append(have, s)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(have, []string{schemaOf[name]}) {
			t.Fatalf("the %s database holds schemas %q, want only %s", name, have, schemaOf[name])
		}
	}

	confirmed := postOrder(t, base["order"], "sku-1", 2, 1500)
	declined := postOrder(t, base["order"], "sku-1", 1, declineOver+10_000)
	outOfStock := postOrder(t, base["order"], "sku-2", 6, 100)
	ids := []string{confirmed, declined, outOfStock}
	testenv.WaitFor(t, time.Minute, "the three sagas ended in the order service and the read model", func() bool {
		var done, viewed int
		if err := pools["order"].QueryRow(ctx, `SELECT count(*) FROM orders.orders
			WHERE order_id = ANY($1) AND status IN ('CONFIRMED', 'CANCELLED')`, ids).Scan(&done); err != nil {
			return false
		}
		if err := pools["readmodel"].QueryRow(ctx, `SELECT count(*) FROM readmodel.order_views
			WHERE order_id = ANY($1) AND status IN ('CONFIRMED', 'CANCELLED')`, ids).Scan(&viewed); err != nil {
			return false
		}
		return done == len(ids) && viewed == len(ids)
	})

	// The order and inventory databases by flag, payment's too, the read
	// model's from the environment; --database-url is none of them.
	t.Setenv("READMODEL_DATABASE_URL", urls["readmodel"])
	args := []string{"--nats-url", n.URL(), "--deadline", "0", "--quiesce", "1m",
		"--database-url", "postgres://postgres@127.0.0.1:1/nowhere?sslmode=disable&connect_timeout=1",
		"--order-database-url", urls["order"], "--inventory-database-url", urls["inventory"], "--payment-database-url", urls["payment"]}
	check := func() (string, error) {
		t.Helper()
		var out bytes.Buffer
		err := runCheck(ctx, &out, args)
		return out.String(), err
	}

	out, err := check()
	if err != nil || !strings.Contains(out, "orders: 3 (1 CONFIRMED, 2 CANCELLED)\n") || !strings.Contains(out, "\nOK: all 5 invariants hold") {
		t.Fatalf("jetsaga check after three sagas: %v\n%s", err, out)
	}

	for _, tc := range []struct {
		name          string
		db            string
		breakIt, mend string
		args          []any
		invariant     int
		want          string
	}{
		{
			name: "the declined order charged after all", db: "payment",
			breakIt: `UPDATE payment.payments SET status = 'COMPLETED' WHERE order_id = $1 AND status = 'FAILED'`,
			mend:    `UPDATE payment.payments SET status = 'FAILED' WHERE order_id = $1`,
			args:    []any{declined}, invariant: 3, want: fmt.Sprintf("order %s: CANCELLED but charged %d cents (payment ", declined, declineOver+10_000),
		},
		{
			name: "stock that does not add up", db: "inventory",
			breakIt:   `UPDATE inventory.stock SET available = available + 1 WHERE sku = 'sku-1'`,
			mend:      `UPDATE inventory.stock SET available = available - 1 WHERE sku = 'sku-1'`,
			invariant: 2, want: "sku sku-1: initial 100 + adjusted 0 != available 99 + reserved 0 + sold 2 (= 101)",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tag, err := pools[tc.db].Exec(ctx, tc.breakIt, tc.args...); err != nil || tag.RowsAffected() != 1 {
				t.Fatalf("%s: %v, %d rows", tc.breakIt, err, tag.RowsAffected())
			}
			out, err := check()
			t.Logf("report:\n%s", out)
			var ex exitError
			if !errors.As(err, &ex) || ex.code != 1 {
				t.Errorf("jetsaga check: %v, want exit code 1", err)
			}
			for _, want := range []string{
				fmt.Sprintf("\n%d FAIL ", tc.invariant), "(1 violation)\n    " + tc.want, "\nFAILED: 1 of 5 invariants violated",
			} {
				if !strings.Contains(out, want) {
					t.Errorf("the report lacks %q:\n%s", want, out)
				}
			}
			if _, err := pools[tc.db].Exec(ctx, tc.mend, tc.args...); err != nil {
				t.Fatal(err)
			}
			if out, err := check(); err != nil {
				t.Fatalf("jetsaga check once mended: %v\n%s", err, out)
			}
		})
	}
}

// postOrder places an order of one item through the order API.
func postOrder(t *testing.T, orderURL, sku string, qty int, priceCents int64) string {
	t.Helper()
	body, err := json.Marshal(map[string]any{"customer_id": "c1",
		"items": []map[string]any{{"sku": sku, "qty": qty, "unit_price_cents": priceCents}}})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(orderURL+"/orders", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST /orders: %s %s", resp.Status, raw)
	}
	var placed struct {
		OrderID string `json:"order_id"`
	}
	if err := json.Unmarshal(raw, &placed); err != nil || placed.OrderID == "" {
		t.Fatalf("POST /orders: %s: %v", raw, err)
	}
	return placed.OrderID
}
