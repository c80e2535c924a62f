package stack_test

import (
	"slices"
	"testing"

	"github.com/jetsaga/jetsaga/stack"
)

// The stack's payment service declines charges over PaymentLimitCents
// unless JETSAGA_PAYMENT_FLAGS says otherwise: its flags come after the default, and
// the last of a repeated flag wins.
func TestProcsPaymentLimit(t *testing.T) {
	for _, tc := range []struct {
		name, flags string
		want        []string
	}{
		{"default", "", []string{"--decline-over-cents=1000000"}},
		{"overridden", "--decline-over-cents 500 --seed 7", []string{"--decline-over-cents=1000000", "--decline-over-cents", "500", "--seed", "7"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("JETSAGA_PAYMENT_FLAGS", tc.flags)
			c, err := stack.FromEnv(t.TempDir(), "")
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range c.Procs() {
				switch p.Name {
				case "payment":
					if !slices.Equal(p.Args, tc.want) {
						t.Errorf("payment args = %q, want %q", p.Args, tc.want)
					}
				default:
					if len(p.Args) != 0 {
						t.Errorf("%s args = %q, want none", p.Name, p.Args)
					}
				}
			}
		})
	}
}
