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
	seed := fs.String("seed-stock", "", `stock for SKUs that have none yet, e.g. "sku-1=100,sku-2=5"`)
	if err := service.ParseConfig(fs, &cfg, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "inventory:", err)
		os.Exit(2)
	}
	stock, err := inventory.ParseSeedStock(*seed)
	if err != nil {
		fmt.Fprintln(os.Stderr, "inventory: --seed-stock:", err)
		os.Exit(2)
	}
	os.Exit(service.Main(cfg, inventory.Spec(inventory.Config{SeedStock: stock})))
}
