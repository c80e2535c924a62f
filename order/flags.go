package order

import "flag"

// AddFlags registers the order binary's own flags (beyond
// service.AddFlags) on fs. cmd/order calls it; the deployment files' test
// reads the flags from it.
func AddFlags(fs *flag.FlagSet, cfg *Config) {
	fs.DurationVar(&cfg.SagaDeadline, "saga-deadline", DefaultSagaDeadline,
		"how long an order may stay PENDING or RESERVED; past it the order is cancelled with reason timeout, "+
			"inventory releases its stock and payment refunds a charge that completed. 0 turns deadlines off")
}
