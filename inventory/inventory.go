package inventory

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/jetsaga/jetsaga/internal/event"
)

// Status is the state of a reservation.
type Status string

// Reservation states. HELD is the only state that moves: to COMMITTED when the
// order is confirmed, to RELEASED when its payment failed or the order was
// cancelled. REJECTED is decided at once and holds nothing. CANCELLED is the
// decision recorded for an order cancelled before its order.created came:
// it holds nothing, and the late order.created reserves nothing.
const (
	Held      Status = "HELD"
	Committed Status = "COMMITTED"
	Released  Status = "RELEASED"
	Rejected  Status = "REJECTED"
	Cancelled Status = "CANCELLED"
)

// MaxAvailable bounds the stock one PUT /stock or --seed-stock entry may set,
// well inside the int column so that sums of stock stay representable.
const MaxAvailable = 1_000_000_000

// Line is what a reservation holds of one SKU: the quantities of every order
// line for that SKU summed.
type Line struct {
	SKU string
	Qty int
}

// Lines merges the items of an order into one line per SKU, summing their
// quantities, sorted by SKU: the order in which stock rows are locked, so that
// concurrent reservations never deadlock.
func Lines(items []event.Item) []Line {
	bySKU := make(map[string]int, len(items))
	for _, it := range items {
		bySKU[it.SKU] += it.Qty
	}
	lines := make([]Line, 0, len(bySKU))
	for sku, qty := range bySKU {
		lines = append(lines, Line{SKU: sku, Qty: qty})
	}
	slices.SortFunc(lines, func(a, b Line) int { return cmp.Compare(a.SKU, b.SKU) })
	return lines
}

// Total returns the sum of qty × unit price over items. The event contract
// bounds items so that it fits an int64.
func Total(items []event.Item) int64 {
	var sum int64
	for _, it := range items {
		sum += int64(it.Qty) * it.UnitPriceCents
	}
	return sum
}

// RejectReason says why a line could not be reserved: unknown_sku when the
// SKU has no stock row, out_of_stock when it has too little available.
func RejectReason(skuKnown bool) string {
	if skuKnown {
		return event.ReasonOutOfStock
	}
	return event.ReasonUnknownSKU
}

// Transition is what happens to a HELD reservation, the only state that
// moves. A transition applies only to a HELD reservation; for any other state
// (or none) the event that would cause it is a no-op.
type Transition int

// The transitions of a HELD reservation.
const (
	Release Transition = iota + 1 // payment.failed or order.cancelled: HELD → RELEASED, stock back to available
	Commit                        // order.confirmed: HELD → COMMITTED, stock from reserved to sold
)

// To returns the status a HELD reservation moves to.
func (t Transition) To() Status {
	switch t {
	case Release:
		return Released
	case Commit:
		return Committed
	}
	return ""
}

// Stock is the stock of one SKU.
type Stock struct {
	SKU       string `json:"sku"`
	Available int    `json:"available"`
	Reserved  int    `json:"reserved"`
	Sold      int    `json:"sold"`
	Initial   int    `json:"initial"`  // what the SKU started with: its seed, or the PUT that created it
	Adjusted  int    `json:"adjusted"` // the net of every later PUT /stock/{sku} (each in stock_adjustments)
}

// ErrUnbalanced is returned by [Stock.Check] when initial + adjusted ≠
// available + reserved + sold.
var ErrUnbalanced = errors.New("stock unbalanced")

// Check verifies docs/DESIGN.md's invariant 2 for one SKU: initial + adjusted
// = available + reserved + sold, none of them negative.
func (s Stock) Check() error {
	if s.Available < 0 || s.Reserved < 0 || s.Sold < 0 {
		return fmt.Errorf("sku %s: negative count (available %d, reserved %d, sold %d): %w",
			s.SKU, s.Available, s.Reserved, s.Sold, ErrUnbalanced)
	}
	if s.Initial+s.Adjusted != s.Available+s.Reserved+s.Sold {
		return fmt.Errorf("sku %s: initial %d + adjusted %d != available %d + reserved %d + sold %d: %w",
			s.SKU, s.Initial, s.Adjusted, s.Available, s.Reserved, s.Sold, ErrUnbalanced)
	}
	return nil
}

// Hold returns s with qty moved from available to reserved, or false if
// fewer than qty are available.
func (s Stock) Hold(qty int) (Stock, bool) {
	if qty <= 0 || s.Available < qty {
		return s, false
	}
	s.Available -= qty
	s.Reserved += qty
	return s, true
}

// Apply returns s after transition t of a reservation holding qty of it:
// Release moves qty from reserved back to available, Commit from reserved to
// sold.
func (s Stock) Apply(t Transition, qty int) Stock {
	switch t {
	case Release:
		s.Reserved -= qty
		s.Available += qty
	case Commit:
		s.Reserved -= qty
		s.Sold += qty
	}
	return s
}

// SetAvailable returns s with available set to n and the difference added
// to adjusted, so that the invariant still holds: what PUT /stock/{sku} does
// to an existing SKU.
func (s Stock) SetAvailable(n int) Stock {
	s.Adjusted += n - s.Available
	s.Available = n
	return s
}

// ValidSKU reports whether sku is 1 to 64 bytes of [A-Za-z0-9_-], the
// contract's rule for SKUs.
func ValidSKU(sku string) bool {
	if len(sku) == 0 || len(sku) > 64 {
		return false
	}
	for i := range len(sku) {
		c := sku[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// ValidAvailable checks a stock level to set: 0 to [MaxAvailable].
func ValidAvailable(n int64) error {
	if n < 0 || n > MaxAvailable {
		return fmt.Errorf("must be 0-%d, got %d", MaxAvailable, n)
	}
	return nil
}

// ParseSeedStock parses the --seed-stock flag: comma-separated sku=qty
// entries, e.g. "sku-1=100,sku-2=5". Spaces around entries, SKUs and
// quantities are ignored; an empty string is no seed. Each SKU must be valid
// and given once, each quantity an integer from 0 to [MaxAvailable].
func ParseSeedStock(s string) (map[string]int, error) {
	seed := map[string]int{}
	if strings.TrimSpace(s) == "" {
		return seed, nil
	}
	for i, entry := range strings.Split(s, ",") {
		sku, qty, ok := strings.Cut(entry, "=")
		sku, qty = strings.TrimSpace(sku), strings.TrimSpace(qty)
		if !ok {
			return nil, fmt.Errorf("seed stock entry %d %q: want sku=qty", i+1, strings.TrimSpace(entry))
		}
		if !ValidSKU(sku) {
			return nil, fmt.Errorf("seed stock entry %d %q: sku must be 1-64 chars of [A-Za-z0-9_-]", i+1, strings.TrimSpace(entry))
		}
		if _, dup := seed[sku]; dup {
			return nil, fmt.Errorf("seed stock entry %d %q: sku %s given twice", i+1, strings.TrimSpace(entry), sku)
		}
		n, err := strconv.ParseInt(qty, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("seed stock entry %d %q: qty must be an integer", i+1, strings.TrimSpace(entry))
		}
		if err := ValidAvailable(n); err != nil {
			return nil, fmt.Errorf("seed stock entry %d %q: qty %w", i+1, strings.TrimSpace(entry), err)
		}
		seed[sku] = int(n)
	}
	return seed, nil
}

// validSeed checks a seed map given in code rather than parsed.
func validSeed(seed map[string]int) error {
	for sku, n := range seed {
		if !ValidSKU(sku) {
			return fmt.Errorf("seed stock: sku %q must be 1-64 chars of [A-Za-z0-9_-]", sku)
		}
		if err := ValidAvailable(int64(n)); err != nil {
			return fmt.Errorf("seed stock: sku %s: qty %w", sku, err)
		}
	}
	return nil
}
