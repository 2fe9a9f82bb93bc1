// Command baseline is the yardstick of the benchmark harness: a bare fasthttp server
// that answers every request with a small JSON document shaped like the service's
// success envelope around a user, encoded per request, with no authentication,
// actors, database or cache. bench/run.sh drives it with the same k6 scripts as the
// service in the same run, so that every figure of the service can be given as a
// ratio to what this machine, at this moment, can do at all.
//
//	go run ./bench/baseline -addr 127.0.0.1:3099
//
// A POST answers 201 and anything else 200, so that the scenarios' status checks
// hold against it too.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	json "github.com/goccy/go-json"
	"github.com/valyala/fasthttp"

	"github.com/lms-platform/userservice"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "baseline: %v\n", err)
		os.Exit(1)
	}
}

type envelope struct {
	Success   bool             `json:"success"`
	Data      userservice.User `json:"data"`
	Timestamp string           `json:"timestamp"`
}

func handler() fasthttp.RequestHandler {
	username, bio := "mario_bauer_0", "Lifelong learner."
	created := userservice.NewTime(time.Date(2026, 8, 28, 5, 59, 12, 862e6, time.UTC))
	// The service's own User type, so the body costs what GET /me's costs to encode.
	u := userservice.User{
		ID: "01a2166f-c2e1-77b2-bc76-6c1c65e1e4c4", AuthID: "01a2166f-c2e1-775a-9ff9-041298ef3f2d",
		Email: "mario.bauer.0@example.com", Username: &username, FirstName: "Mario", LastName: "Bauer",
		Bio: &bio, Timezone: "UTC", Language: "en", Role: userservice.RoleStudent, Status: userservice.StatusActive,
		CreatedAt: created, UpdatedAt: created, Version: 3,
	}
	return func(ctx *fasthttp.RequestCtx) {
		b, err := json.Marshal(envelope{Success: true, Data: u, Timestamp: time.Now().UTC().Format("2006-01-02T15:04:05.000Z")})
		if err != nil {
			ctx.Error(err.Error(), fasthttp.StatusInternalServerError)
			return
		}
		ctx.SetContentType("application/json; charset=utf-8")
		if ctx.IsPost() {
			ctx.SetStatusCode(fasthttp.StatusCreated)
		}
		ctx.SetBody(b)
	}
}

func run(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("baseline", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:3099", "listen address")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("cannot listen on %s: %w", *addr, err)
	}
	srv := &fasthttp.Server{Handler: handler(), Name: "baseline", ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	fmt.Fprintf(stderr, "baseline: listening on %s\n", ln.Addr())
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.ShutdownWithContext(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("cannot shut down: %w", err)
	}
	return nil
}
