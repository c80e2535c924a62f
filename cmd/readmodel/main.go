// Command readmodel runs the read model: it projects every saga event into
// order views and serves them, with how far behind it is. See the readmodel
// package.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/jetsaga/jetsaga/internal/service"
	"github.com/jetsaga/jetsaga/readmodel"
)

func main() {
	var cfg service.Config
	var rc readmodel.Config
	fs := flag.NewFlagSet("readmodel", flag.ExitOnError)
	service.AddFlags(fs, &cfg, "127.0.0.1:8084")
	readmodel.AddFlags(fs, &rc)
	if err := service.ParseConfig(fs, &cfg, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "readmodel:", err)
		os.Exit(2)
	}
	if err := rc.ValidateFlags(); err != nil {
		fmt.Fprintln(os.Stderr, "readmodel:", err)
		os.Exit(2)
	}
	os.Exit(service.Main(cfg, readmodel.Spec(rc)))
}
