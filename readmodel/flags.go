package readmodel

import (
	"flag"
	"fmt"
	"time"
)

// AddFlags registers the readmodel binary's own flags (beyond
// service.AddFlags) on fs. cmd/readmodel calls it; the deployment files'
// test reads the flags from it.
func AddFlags(fs *flag.FlagSet, cfg *Config) {
	fs.DurationVar(&cfg.EventRetention, "event-retention", 24*time.Hour, "how long the events of a finished (CONFIRMED or CANCELLED) order are kept after its last event; then they are deleted and its view stands for them")
	fs.IntVar(&cfg.MaxWatchers, "max-watchers", DefaultMaxWatchers, "watch streams (GET /orders/{id}/watch) open at once; beyond, 503 with Retry-After")
	fs.DurationVar(&cfg.PruneEvery, "prune-every", time.Minute, "how often the read model deletes the events past --event-retention")
	fs.DurationVar(&cfg.StuckAfter, "stuck-after", DefaultStuckAfter, "a saga not CONFIRMED or CANCELLED this long after its order.created is stuck (GET /sagas?state=stuck, /stats)")
}

// ValidateFlags reports flag values AddFlags took that make no sense.
func (c Config) ValidateFlags() error {
	if c.StuckAfter <= 0 {
		return fmt.Errorf("--stuck-after %s: want > 0", c.StuckAfter)
	}
	return nil
}
