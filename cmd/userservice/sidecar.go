package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strconv"
	"time"

	"github.com/lms-platform/userservice/metricshelp"
)

// serveMetricsPort serves METRICS_PATH alone on METRICS_PORT, for scrapers kept off
// the API port (the API port serves /metrics too). A port that cannot be bound is
// logged, not fatal.
func serveMetricsPort(ctx context.Context, cfg Config, logger *slog.Logger) {
	mux := http.NewServeMux()
	mux.HandleFunc(cfg.MetricsPath, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		if err := metricshelp.WritePrometheus(w); err != nil {
			logger.Debug("cannot write the metrics", slog.Any("error", err))
		}
	})
	serveSidecar(ctx, net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.MetricsPort)), "metrics", mux, logger)
}

// servePprof serves net/http/pprof on addr (PPROF_ADDR, e.g. 127.0.0.1:6060), for
// CPU profiles under load. Off unless PPROF_ADDR is set; keep it on loopback.
func servePprof(ctx context.Context, addr string, logger *slog.Logger) {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	serveSidecar(ctx, addr, "pprof", mux, logger)
}

func serveSidecar(ctx context.Context, addr, what string, h http.Handler, logger *slog.Logger) {
	srv := &http.Server{Addr: addr, Handler: h, ReadHeaderTimeout: 5 * time.Second}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		logger.Warn("cannot serve "+what, slog.String("addr", addr), slog.Any("error", err))
		return
	}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	logger.Info("serving "+what, slog.String("addr", ln.Addr().String()))
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		logger.Warn(what+" server stopped", slog.Any("error", err))
	}
}
