package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"

	"github.com/lms-platform/userservice/messaging"
)

// runCommand runs an operator's one-off command instead of the service, with
// the service's configuration (same environment, so the same queue names):
//
//	userservice dlq-replay [-max N]   move dead-lettered events back to RABBITMQ_QUEUE
//
// It prints one JSON line with the outcome to stdout (docs/operations.md).
func runCommand(ctx context.Context, cfg Config, args []string, logger *slog.Logger, stdout io.Writer) error {
	switch args[0] {
	case "dlq-replay":
		fs := flag.NewFlagSet("dlq-replay", flag.ContinueOnError)
		fs.SetOutput(stdout)
		max := fs.Int("max", 0, "move at most this many messages (0: those in the DLQ at the start)")
		if err := fs.Parse(args[1:]); err != nil {
			return fmt.Errorf("dlq-replay: %w", err)
		}
		if *max < 0 || fs.NArg() > 0 {
			return fmt.Errorf("dlq-replay: usage: userservice dlq-replay [-max N] (N >= 0)")
		}
		res, err := messaging.ReplayDLQ(ctx, cfg.RabbitURL(), cfg.RabbitMQQueue, *max, logger)
		out, _ := json.Marshal(map[string]any{
			"command": "dlq-replay", "queue": cfg.RabbitMQQueue, "moved": res.Moved, "remaining": res.Remaining,
		})
		fmt.Fprintf(stdout, "%s\n", out)
		if err != nil {
			return fmt.Errorf("dlq-replay: %w", err)
		}
		return nil
	default:
		return fmt.Errorf("unknown command %q (commands: dlq-replay)", args[0])
	}
}
