package check

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/internal/stream"
)

// maxListed bounds how many violations a Result lists; Count has them all.
const maxListed = 20

// DefaultDeadline is how long jetsaga check gives a saga before an order that
// has not ended counts as stuck (invariant 1). A saga ends in milliseconds
// on a healthy stack and within a few AckWaits after crashes; a minute
// leaves room for both. (The planned saga deadline, which cancels an order
// with reason timeout, will take its place.)
const DefaultDeadline = time.Minute

// Options tune a check.
type Options struct {
	// Deadline: orders created longer ago than this must be settled; younger
	// ones may be in flight, and the report lists them as such. 0 checks
	// every order, which is right after Quiesce.
	Deadline time.Duration
	// AckPendingBound: a message delivered and unacknowledged that was
	// stored longer ago than this is a violation of invariant 4. 0 takes
	// DefaultAckPendingBound; a negative value turns the check off.
	AckPendingBound time.Duration
	// Injected lists messages put into the event streams on purpose to
	// break the contract (jetsaga chaos --poison): they, and their dead
	// letters in DLQ and in the services' dead_letters tables, are not
	// violations. The caller accounts for them.
	Injected map[StreamMsg]bool
}

// StreamMsg names one message of a stream.
type StreamMsg struct {
	Stream string
	Seq    uint64
}

// Result is the outcome of one invariant.
type Result struct {
	Invariant  int      // 1-5, as numbered in docs/DESIGN.md
	Name       string   // what the invariant says
	OK         bool     // no violation found
	Violations []string // the first violations found, at most 20, each naming its order, SKU, event or subject
	Count      int      // how many violations were found in all
}

// add records one violation.
func (r *Result) add(format string, args ...any) {
	r.Count++
	if len(r.Violations) < maxListed {
		r.Violations = append(r.Violations, fmt.Sprintf(format, args...))
	}
}

// Report is the outcome of a check.
type Report struct {
	Results  []Result          // one per invariant, 1 to 5
	Orders   map[string]int    // orders.orders: status -> count
	Streams  map[string]uint64 // messages read per stream (ORDERS, INVENTORY, PAYMENTS, DLQ)
	DLQ      uint64            // dead-lettered messages (the DLQ stream's message count)
	Deadline time.Duration     // Options.Deadline the check ran with
	// InFlight lists the first orders (at most 20) younger than Deadline
	// that have not ended yet: not violations, merely in flight.
	InFlight      []string
	InFlightCount int           // how many such orders there are in all
	Took          time.Duration // how long the check took
}

// OK reports whether every invariant holds.
func (r Report) OK() bool {
	for _, res := range r.Results {
		if !res.OK {
			return false
		}
	}
	return len(r.Results) > 0
}

// Failed returns the numbers of the invariants that do not hold.
func (r Report) Failed() []int {
	var failed []int
	for _, res := range r.Results {
		if !res.OK {
			failed = append(failed, res.Invariant)
		}
	}
	return failed
}

// statusOrder is the order in which Write lists order statuses.
var statusOrder = []string{"PENDING", "RESERVED", "CONFIRMED", "CANCELLED"}

// Write prints the report: what was looked at, then one line per invariant
// ("1 PASS every order older than 0s is terminal ..."), each failed one
// followed by its violations, indented, then a verdict.
func (r Report) Write(w io.Writer) {
	var b strings.Builder

	statuses := make([]string, 0, len(r.Orders))
	total := 0
	for s, n := range r.Orders {
		statuses = append(statuses, s)
		total += n
	}
	slices.SortFunc(statuses, func(a, b string) int {
		ia, ib := slices.Index(statusOrder, a), slices.Index(statusOrder, b)
		if ia < 0 {
			ia = len(statusOrder)
		}
		if ib < 0 {
			ib = len(statusOrder)
		}
		return cmp.Or(cmp.Compare(ia, ib), cmp.Compare(a, b))
	})
	parts := make([]string, 0, len(statuses))
	for _, s := range statuses {
		parts = append(parts, fmt.Sprintf("%d %s", r.Orders[s], s))
	}
	if len(parts) == 0 {
		parts = append(parts, "none")
	}
	fmt.Fprintf(&b, "orders: %d (%s)\n", total, strings.Join(parts, ", "))

	names := append(eventStreams(), stream.DLQ)
	parts = parts[:0]
	for _, name := range names {
		parts = append(parts, fmt.Sprintf("%s %d", name, r.Streams[name]))
	}
	fmt.Fprintf(&b, "messages: %s\n", strings.Join(parts, ", "))

	if r.InFlightCount > 0 {
		fmt.Fprintf(&b, "in flight: %d %s younger than %v not ended yet (not a violation; check again later or with --deadline 0 after quiescence)\n",
			r.InFlightCount, plural(r.InFlightCount, "order", "orders"), r.Deadline)
		for _, o := range r.InFlight {
			fmt.Fprintf(&b, "    %s\n", o)
		}
		if more := r.InFlightCount - len(r.InFlight); more > 0 {
			fmt.Fprintf(&b, "    ... and %d more\n", more)
		}
	}

	for _, res := range r.Results {
		verdict := "PASS"
		if !res.OK {
			verdict = "FAIL"
		}
		fmt.Fprintf(&b, "%d %s %s", res.Invariant, verdict, res.Name)
		if res.Count > 0 {
			fmt.Fprintf(&b, " (%d %s)", res.Count, plural(res.Count, "violation", "violations"))
		}
		b.WriteByte('\n')
		for _, v := range res.Violations {
			fmt.Fprintf(&b, "    %s\n", v)
		}
		if more := res.Count - len(res.Violations); more > 0 {
			fmt.Fprintf(&b, "    ... and %d more\n", more)
		}
	}

	if r.OK() {
		fmt.Fprintf(&b, "OK: all %d invariants hold (checked in %v)\n", len(r.Results), r.Took.Round(time.Millisecond))
	} else {
		fmt.Fprintf(&b, "FAILED: %d of %d invariants violated (checked in %v)\n", len(r.Failed()), len(r.Results), r.Took.Round(time.Millisecond))
	}
	_, _ = io.WriteString(w, b.String())
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// eventStreams are the streams that hold saga events.
func eventStreams() []string { return []string{stream.Orders, stream.Inventory, stream.Payments} }

// DBs are the services' databases: for each service, a pool on the
// database that holds its schema (orders, inventory, payment, readmodel).
// Each service may have a database, even a server, of its own; with one
// database for all four (make up's layout) every field is the same pool:
// [OneDB]. The pools may have any search_path: the check names every table
// with its schema.
type DBs struct {
	Order, Inventory, Payment, ReadModel *pgxpool.Pool
}

// OneDB is the single-database layout: pool holds all four schemas.
func OneDB(pool *pgxpool.Pool) DBs {
	return DBs{Order: pool, Inventory: pool, Payment: pool, ReadModel: pool}
}

// serviceDB is one service's schema and the database that holds it.
type serviceDB struct {
	service, schema string
	pool            *pgxpool.Pool
}

// services lists each service's schema and database, in the order the
// report names them.
func (d DBs) services() []serviceDB {
	return []serviceDB{
		{"order", "orders", d.Order},
		{"inventory", "inventory", d.Inventory},
		{"payment", "payment", d.Payment},
		{"readmodel", "readmodel", d.ReadModel},
	}
}

// validate reports a service without a database, and a pool too small for
// the per-order pass, which reads the four services' tables at once (one
// connection each): with one pool for all four, it needs four connections.
func (d DBs) validate() error {
	need := map[*pgxpool.Pool]int32{}
	for _, s := range d.services() {
		if s.pool == nil {
			return fmt.Errorf("check: no database for the %s service", s.service)
		}
		need[s.pool]++
	}
	for pool, n := range need {
		if limit := pool.Config().MaxConns; limit < n {
			return fmt.Errorf("check: a pool of at most %d connections serves %d services, and the check reads their tables at once: allow it %d (pool_max_conns)", limit, n, n)
		}
	}
	return nil
}

// checker holds what every invariant's check needs.
type checker struct {
	dbs DBs
	js  jetstream.JetStream
	opt Options
	rep *Report
}

// cutoff is the Deadline as a query parameter: microseconds, compared with
// the database's own clock, so that the checker's clock does not matter.
func (c *checker) cutoff() int64 { return c.opt.Deadline.Microseconds() }

// Run checks invariants 1 to 5 of docs/DESIGN.md over the services'
// databases dbs and the streams. It returns an error only when it could not
// look (a query or a stream read failed); violations are in the report.
//
// What one service's database answers alone (stock per SKU, outboxes, dead
// letters) is a query there. What compares services (an order with its
// read-model view, its reservation, its payment) is one pass over the four
// services' tables at once, each read in order id order, joined in Go
// (perOrder): no query spans two databases.
func Run(ctx context.Context, dbs DBs, js jetstream.JetStream, opt Options) (Report, error) {
	began := time.Now()
	if err := dbs.validate(); err != nil {
		return Report{}, err
	}
	rep := Report{
		Orders:   map[string]int{},
		Streams:  map[string]uint64{},
		Deadline: opt.Deadline,
	}
	c := &checker{dbs: dbs, js: js, opt: opt, rep: &rep}
	if err := c.countOrders(ctx); err != nil {
		return Report{}, err
	}
	res := make([]Result, 5)
	for i, name := range []string{
		fmt.Sprintf("every order older than %v is terminal (order service and read model)", opt.Deadline),
		"stock adds up per SKU (initial + adjusted = available + reserved + sold) and reservations match order outcomes",
		"a CONFIRMED order has exactly one completed payment of its total; a CANCELLED order has no net charge (a refunded charge counts as none)",
		"outboxes are empty, every event id is in the streams once, at most one event of a type per order, DLQ empty and no dead letter recorded, nothing ack-pending past the bound",
		"the read model agrees with the order service (status, reason, total, customer)",
	} {
		res[i] = Result{Invariant: i + 1, Name: name}
	}
	// Invariant 2 lists the SKUs first, then the reservations; invariant 3
	// the orders' charges, then the payments of unknown orders.
	var reservations, orphans Result
	if err := c.stock(ctx, &res[1]); err != nil {
		return Report{}, fmt.Errorf("check invariant 2: %w", err)
	}
	if err := c.perOrder(ctx, &res[0], &reservations, &res[2], &orphans, &res[4]); err != nil {
		return Report{}, fmt.Errorf("check invariants 1, 2, 3 and 5: %w", err)
	}
	res[1].merge(reservations)
	res[2].merge(orphans)
	if err := c.delivery(ctx, &res[3]); err != nil {
		return Report{}, fmt.Errorf("check invariant 4: %w", err)
	}
	for i := range res {
		res[i].OK = res[i].Count == 0
	}
	rep.Results = res
	rep.Took = time.Since(began)
	return rep, nil
}

// merge appends o's violations to r's: r's listed first, at most maxListed
// in all, every one counted.
func (r *Result) merge(o Result) {
	r.Count += o.Count
	room := max(maxListed-len(r.Violations), 0)
	r.Violations = append(r.Violations, o.Violations[:min(room, len(o.Violations))]...)
}

// countOrders fills Report.Orders.
func (c *checker) countOrders(ctx context.Context) error {
	rows, err := c.dbs.Order.Query(ctx, `SELECT status, count(*) FROM orders.orders GROUP BY status`)
	if err != nil {
		return fmt.Errorf("count orders: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var status string
		var n int
		if err := rows.Scan(&status, &n); err != nil {
			return fmt.Errorf("count orders: %w", err)
		}
		c.rep.Orders[status] = n
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("count orders: %w", err)
	}
	return nil
}
