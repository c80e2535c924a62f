package main

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/jetsaga/jetsaga/internal/access"
	"github.com/jetsaga/jetsaga/internal/stream"
)

// provisionCmd creates or updates every stream, under the operator identity:
// with per-service identities the services may not (they run with
// --provision-streams=false and create only their own consumers).
func provisionCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("provision", flag.ContinueOnError)
	ep := endpoints{identity: access.Operator}
	ep.flags(fs, "nats-url")
	replicas := fs.Int("replicas", 1, "stream replicas: 1 on one server, 3 in a cluster")
	maxAge := fs.Duration("stream-max-age", 0, "history the streams keep (0: forever; keep the services' --inbox-retention at least as long)")
	dup := fs.Duration("duplicate-window", 2*time.Minute, "the streams' duplicate window on Nats-Msg-Id")
	timeout := fs.Duration("timeout", 60*time.Second, "keep trying this long (a cluster still electing its leaders refuses R3 streams for a moment)")
	if err := parse(fs, args); err != nil {
		return err
	}
	nc, js, err := connectNATS(ep)
	if err != nil {
		return err
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	cfg := stream.Config{Replicas: *replicas, MaxAge: *maxAge, Duplicates: *dup}
	for {
		// Each attempt has its own deadline: a request sent while the
		// cluster elects its meta leader may get no answer at all, and
		// would otherwise wait out the whole --timeout.
		actx, acancel := context.WithTimeout(ctx, 5*time.Second)
		err = stream.Ensure(actx, js, cfg)
		acancel()
		if err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("provision streams: %w", err)
		case <-time.After(500 * time.Millisecond):
		}
	}
	for _, name := range stream.Names() {
		fmt.Printf("stream %s: %s, %d replica(s)\n", name, stream.Subject(name), *replicas)
	}
	return nil
}

// identitiesCmd writes a fresh nkey seed per identity (kept when one is
// there already) and the nats-server authorization block of their public
// keys and permissions into a folder.
func identitiesCmd(_ context.Context, args []string) error {
	fs := flag.NewFlagSet("identities", flag.ContinueOnError)
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("usage: jetsaga identities DIR")
	}
	dir := fs.Arg(0)
	if err := access.Generate(dir); err != nil {
		return err
	}
	fmt.Printf("%s: a seed per identity (%v, mode 0600) and %s (include it in every nats-server's configuration)\n",
		dir, access.Identities(), access.AuthFile)
	return nil
}
