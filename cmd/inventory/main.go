// Command inventory runs the inventory service: stock per SKU, reservations
// per order, and their release as compensation. See the inventory package.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/jetsaga/jetsaga/internal/service"
	"github.com/jetsaga/jetsaga/inventory"
)

func main() {
	var cfg service.Config
	fs := flag.NewFlagSet("inventory", flag.ExitOnError)
	service.AddFlags(fs, &cfg, "127.0.0.1:8082")
	var icfg inventory.Config
	inventory.AddFlags(fs, &icfg)
	if err := service.ParseConfig(fs, &cfg, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "inventory:", err)
		os.Exit(2)
	}
	os.Exit(service.Main(cfg, inventory.Spec(icfg)))
}
