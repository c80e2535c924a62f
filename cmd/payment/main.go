// Command payment runs the payment service: one charge per order through a
// simulated card gateway. See the payment package.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/jetsaga/jetsaga/internal/service"
	"github.com/jetsaga/jetsaga/payment"
)

func main() {
	var (
		cfg service.Config
		pc  payment.Config
	)
	fs := flag.NewFlagSet("payment", flag.ExitOnError)
	service.AddFlags(fs, &cfg, "127.0.0.1:8083")
	fs.Int64Var(&pc.DeclineOverCents, "decline-over-cents", 0, "decline every charge above this many cents (0: off)")
	fs.Float64Var(&pc.DeclineRate, "decline-rate", 0, "decline this fraction of the other charges at random, 0..1")
	fs.Int64Var(&pc.Seed, "seed", 1, "seed of the random declines: the same seed declines the same orders")
	if err := service.ParseConfig(fs, &cfg, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "payment:", err)
		os.Exit(2)
	}
	if pc.DeclineRate < 0 || pc.DeclineRate > 1 {
		fmt.Fprintln(os.Stderr, "payment: --decline-rate must be between 0 and 1")
		os.Exit(2)
	}
	os.Exit(service.Main(cfg, payment.Spec(pc)))
}
