// Command userservice runs the User Service: the HTTP API on PORT, the outbox relay
// to RabbitMQ, the Auth Service event consumer, and the per-user actors behind them.
//
// `userservice import FILE --token T` and `userservice export --token T` are the
// admins' CLI (cli.go): they call a running service's API.
//
// main only calls run; run reads the configuration and wires the packages together
// in reading order. Tests drive run itself.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	// The binary carries the IANA time zone database, so timezone validation does not
	// depend on the host (CONTRACT.md: "timezone a real IANA zone").
	_ "time/tzdata"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args, os.Getenv, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "userservice: %v\n", err)
		os.Exit(1)
	}
}
