package load

import (
	"fmt"
	"strconv"
	"strings"
)

// Class is what an order of the load is meant to end as.
type Class int

// The classes of the mix.
const (
	Confirm Class = iota // in stock, priced under the payment limit: CONFIRMED
	Decline              // priced over the payment limit: CANCELLED payment_failed
	OOS                  // a SKU with no stock: CANCELLED out_of_stock
	numClasses
)

var classNames = [numClasses]string{"confirm", "decline", "oos"}

func (c Class) String() string { return classNames[c] }

// Mix weighs the classes: confirm=80,decline=10,oos=10 makes 80% of the
// orders confirmable, 10% declined by payment and 10% out of stock.
type Mix [numClasses]int

// maxMixTotal bounds the weights' sum, so that the interleaved cycle stays
// small.
const maxMixTotal = 10_000

// ParseMix reads "confirm=80,decline=10,oos=10". Classes left out weigh 0;
// at least one weight must be positive.
func ParseMix(s string) (Mix, error) {
	var m Mix
	seen := map[string]bool{}
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, val, ok := strings.Cut(part, "=")
		if !ok {
			return Mix{}, fmt.Errorf("mix %q: %q is not NAME=WEIGHT", s, part)
		}
		name = strings.TrimSpace(name)
		c := -1
		for i, n := range classNames {
			if n == name {
				c = i
			}
		}
		if c < 0 {
			return Mix{}, fmt.Errorf("mix %q: unknown class %q (want confirm, decline or oos)", s, name)
		}
		if seen[name] {
			return Mix{}, fmt.Errorf("mix %q: %s given twice", s, name)
		}
		seen[name] = true
		w, err := strconv.Atoi(strings.TrimSpace(val))
		if err != nil || w < 0 {
			return Mix{}, fmt.Errorf("mix %q: weight of %s must be a whole number >= 0, got %q", s, name, val)
		}
		m[c] = w
	}
	total := m.total()
	if total == 0 {
		return Mix{}, fmt.Errorf("mix %q: no class has a positive weight", s)
	}
	if total > maxMixTotal {
		return Mix{}, fmt.Errorf("mix %q: weights sum to %d, more than %d", s, total, maxMixTotal)
	}
	return m, nil
}

func (m Mix) total() int {
	n := 0
	for _, w := range m {
		n += w
	}
	return n
}

func (m Mix) String() string {
	parts := make([]string, 0, numClasses)
	for c, w := range m {
		parts = append(parts, fmt.Sprintf("%s=%d", classNames[c], w))
	}
	return strings.Join(parts, ",")
}

// cycle is one period of the mix with the classes interleaved as evenly as
// their weights allow (smooth weighted round robin): for 80/10/10 a decline
// and an out-of-stock order come every ten orders, not in runs of ten. Order
// number i of the load is of class cycle[i % len(cycle)].
func (m Mix) cycle() []Class {
	total := m.total()
	out := make([]Class, 0, total)
	var current [numClasses]int
	for range total {
		best := -1
		for c, w := range m {
			current[c] += w
			if w > 0 && (best < 0 || current[c] > current[best]) {
				best = c
			}
		}
		current[best] -= total
		out = append(out, Class(best))
	}
	return out
}

// Cycle is one period of the mix, as Run places it: order number i is of
// class Cycle()[i % len(Cycle())]. A history filler uses it to give the
// history the load's shape.
func (m Mix) Cycle() []Class { return m.cycle() }
