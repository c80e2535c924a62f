package chaos

import (
	"fmt"
	"math/rand/v2"
	"strings"

	"github.com/jetsaga/jetsaga/client"
)

// The stock the chaos run seeds: plenty of four SKUs, so that ordinary
// orders are confirmed, and one scarce SKU, so that some run out of stock.
var stock = []struct {
	SKU   string
	Units int
}{
	{"sku-apple", 1_000_000},
	{"sku-pear", 1_000_000},
	{"sku-plum", 1_000_000},
	{"sku-fig", 1_000_000},
	{"sku-scarce", 25},
}

// Payment settings of the chaos run: charges above declineOverCents are
// declined, and declineRate of the others at random.
const (
	declineOverCents = 20000
	declineRate      = 0.03
)

// unknownSKU is a SKU that has no stock row: inventory rejects the order.
const unknownSKU = "sku-ghost"

// seedStock is inventory's --seed-stock value.
func seedStock() string {
	parts := make([]string, len(stock))
	for i, s := range stock {
		parts[i] = fmt.Sprintf("%s=%d", s.SKU, s.Units)
	}
	return strings.Join(parts, ",")
}

// Kinds of scripted orders, each aimed at one outcome of the saga.
const (
	kindOrdinary  = "ordinary"  // plentiful SKUs, under the decline limit: confirmed (or randomly declined)
	kindScarce    = "scarce"    // wants the scarce SKU: confirmed until it runs out, then out_of_stock
	kindExpensive = "expensive" // over the decline limit: payment_failed, stock released
	kindUnknown   = "unknown"   // a SKU with no stock row: unknown_sku
)

// scripted is one order the run places.
type scripted struct {
	Kind  string
	Order client.Order
}

// script returns the n orders of a run, the same for the same seed: 80%
// ordinary, 8% scarce, 10% expensive, 2% with an unknown SKU.
func script(seed int64, n int) []scripted {
	r := rand.New(rand.NewPCG(uint64(seed), 0x6f7264657273)) // "orders"
	plenty := []string{"sku-apple", "sku-pear", "sku-plum", "sku-fig"}
	out := make([]scripted, n)
	for i := range out {
		customer := fmt.Sprintf("cust-%03d", r.IntN(200))
		var s scripted
		switch k := r.IntN(100); {
		case k < 2:
			s = scripted{kindUnknown, client.Order{CustomerID: customer, Items: []client.Item{
				{SKU: unknownSKU, Qty: 1, UnitPriceCents: 500},
				{SKU: plenty[r.IntN(len(plenty))], Qty: 1, UnitPriceCents: 250},
			}}}
		case k < 10:
			s = scripted{kindScarce, client.Order{CustomerID: customer, Items: []client.Item{
				{SKU: "sku-scarce", Qty: 1, UnitPriceCents: 4999},
				{SKU: plenty[r.IntN(len(plenty))], Qty: 1 + r.IntN(2), UnitPriceCents: 120},
			}}}
		case k < 20:
			// 2 to 4 units at more than 100 dollars: always above the limit.
			s = scripted{kindExpensive, client.Order{CustomerID: customer, Items: []client.Item{
				{SKU: plenty[r.IntN(len(plenty))], Qty: 2 + r.IntN(3), UnitPriceCents: int64(declineOverCents/2 + 1 + r.IntN(5000))},
			}}}
		default:
			// 1 to 3 distinct SKUs, 1 to 4 units each, at most 15 dollars a
			// unit: at most 180 dollars, under the limit.
			items := make([]client.Item, 1+r.IntN(3))
			for j, p := range r.Perm(len(plenty))[:len(items)] {
				items[j] = client.Item{SKU: plenty[p], Qty: 1 + r.IntN(4), UnitPriceCents: int64(100 + r.IntN(1401))}
			}
			s = scripted{kindOrdinary, client.Order{CustomerID: customer, Items: items}}
		}
		out[i] = s
	}
	return out
}

// total is what an order costs.
func total(o client.Order) int64 {
	var t int64
	for _, it := range o.Items {
		t += int64(it.Qty) * it.UnitPriceCents
	}
	return t
}
