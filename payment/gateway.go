package payment

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// Status is the outcome of a payment.
type Status string

// Payment outcomes. The gateway decides COMPLETED or FAILED; an
// order.cancelled turns a COMPLETED payment into REFUNDED (the charge given
// back) and records CANCELLED for an order that was never charged, so that
// it never will be.
const (
	Completed Status = "COMPLETED"
	Failed    Status = "FAILED"
	Refunded  Status = "REFUNDED"
	Cancelled Status = "CANCELLED"
)

// Reasons the simulated gateway declines a charge.
const (
	ReasonDeclinedOverLimit = "declined_over_limit"
	ReasonDeclinedRandom    = "declined_random"
)

// Gateway is the simulated card gateway. Its decisions are a pure function
// of its settings, the order id and the amount, so a redelivered event or a
// rerun with the same seed decides the same.
type Gateway struct {
	DeclineOverCents int64   // decline amounts above this; 0 turns the limit off
	DeclineRate      float64 // share of the other charges declined at random, 0 to 1
	Seed             int64   // seeds the random declines
}

// Validate checks the settings.
func (g Gateway) Validate() error {
	var errs []error
	if g.DeclineOverCents < 0 {
		errs = append(errs, fmt.Errorf("decline over cents must be >= 0 (0 turns it off), got %d", g.DeclineOverCents))
	}
	if math.IsNaN(g.DeclineRate) || g.DeclineRate < 0 || g.DeclineRate > 1 {
		errs = append(errs, fmt.Errorf("decline rate must be from 0 to 1, got %v", g.DeclineRate))
	}
	return errors.Join(errs...)
}

// Decision is the gateway's answer to one charge.
type Decision struct {
	Status Status // Completed or Failed
	Reason string // for Failed: ReasonDeclinedOverLimit or ReasonDeclinedRandom
}

// Charge decides the charge of amountCents for the order: declined over the
// limit; else declined if the order's roll falls below the decline rate; else
// approved.
func (g Gateway) Charge(orderID string, amountCents int64) Decision {
	if g.DeclineOverCents > 0 && amountCents > g.DeclineOverCents {
		return Decision{Status: Failed, Reason: ReasonDeclinedOverLimit}
	}
	if g.DeclineRate > 0 && Roll(g.Seed, orderID) < g.DeclineRate {
		return Decision{Status: Failed, Reason: ReasonDeclinedRandom}
	}
	return Decision{Status: Completed}
}

// Roll maps (seed, order id) to a number in [0, 1), uniformly enough for
// simulated declines and always the same for the same inputs: the first 53
// bits of SHA-256(seed as 8 big-endian bytes ‖ order id).
func Roll(seed int64, orderID string) float64 {
	h := sha256.New()
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(seed))
	h.Write(b[:])
	h.Write([]byte(orderID))
	sum := h.Sum(nil)
	return float64(binary.BigEndian.Uint64(sum[:8])>>11) / (1 << 53)
}
