// Command order runs the order service: it takes orders over HTTP and drives
// each order's state from the saga's events. See the order package.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/jetsaga/jetsaga/internal/service"
	"github.com/jetsaga/jetsaga/order"
)

func main() {
	var cfg service.Config
	fs := flag.NewFlagSet("order", flag.ExitOnError)
	service.AddFlags(fs, &cfg, "127.0.0.1:8081")
	var ocfg order.Config
	order.AddFlags(fs, &ocfg)
	if err := service.ParseConfig(fs, &cfg, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "order:", err)
		os.Exit(2)
	}
	os.Exit(service.Main(cfg, order.Spec(ocfg)))
}
