// Command readmodel runs the read model: it projects every saga event into
// order views and serves them, with how far behind it is. See the readmodel
// package.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/jetsaga/jetsaga/internal/service"
	"github.com/jetsaga/jetsaga/readmodel"
)

func main() {
	var cfg service.Config
	var rc readmodel.Config
	fs := flag.NewFlagSet("readmodel", flag.ExitOnError)
	service.AddFlags(fs, &cfg, "127.0.0.1:8084")
	fs.DurationVar(&rc.EventRetention, "event-retention", 24*time.Hour, "how long the events of a finished (CONFIRMED or CANCELLED) order are kept after its last event; then they are deleted and its view stands for them")
	fs.IntVar(&rc.MaxWatchers, "max-watchers", readmodel.DefaultMaxWatchers, "watch streams (GET /orders/{id}/watch) open at once; beyond, 503 with Retry-After")
	fs.DurationVar(&rc.PruneEvery, "prune-every", time.Minute, "how often the read model deletes the events past --event-retention")
	fs.DurationVar(&rc.StuckAfter, "stuck-after", readmodel.DefaultStuckAfter, "a saga not CONFIRMED or CANCELLED this long after its order.created is stuck (GET /sagas?state=stuck, /stats)")
	if err := service.ParseConfig(fs, &cfg, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "readmodel:", err)
		os.Exit(2)
	}
	if rc.StuckAfter <= 0 {
		fmt.Fprintf(os.Stderr, "readmodel: --stuck-after %s: want > 0\n", rc.StuckAfter)
		os.Exit(2)
	}
	os.Exit(service.Main(cfg, readmodel.Spec(rc)))
}
