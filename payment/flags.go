package payment

import (
	"errors"
	"flag"
)

// AddFlags registers the payment binary's own flags (beyond
// service.AddFlags) on fs. cmd/payment calls it; the deployment files' test
// reads the flags from it.
func AddFlags(fs *flag.FlagSet, cfg *Config) {
	fs.Int64Var(&cfg.DeclineOverCents, "decline-over-cents", 0, "decline every charge above this many cents (0: off)")
	fs.Float64Var(&cfg.DeclineRate, "decline-rate", 0, "decline this fraction of the other charges at random, 0..1")
	fs.Int64Var(&cfg.Seed, "seed", 1, "seed of the random declines: the same seed declines the same orders")
}

// ValidateFlags reports flag values AddFlags took that make no sense.
func (c Config) ValidateFlags() error {
	if c.DeclineRate < 0 || c.DeclineRate > 1 {
		return errors.New("--decline-rate must be between 0 and 1")
	}
	return nil
}
