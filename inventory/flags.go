package inventory

import "flag"

// AddFlags registers the inventory binary's own flags (beyond
// service.AddFlags) on fs. cmd/inventory calls it; the deployment files'
// test reads the flags from it.
func AddFlags(fs *flag.FlagSet, cfg *Config) {
	fs.Func("seed-stock", `stock for SKUs that have none yet, e.g. "sku-1=100,sku-2=5"`, func(s string) error {
		stock, err := ParseSeedStock(s)
		if err != nil {
			return err
		}
		cfg.SeedStock = stock
		return nil
	})
}
