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
	payment.AddFlags(fs, &pc)
	if err := service.ParseConfig(fs, &cfg, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "payment:", err)
		os.Exit(2)
	}
	if err := pc.ValidateFlags(); err != nil {
		fmt.Fprintln(os.Stderr, "payment:", err)
		os.Exit(2)
	}
	os.Exit(service.Main(cfg, payment.Spec(pc)))
}
