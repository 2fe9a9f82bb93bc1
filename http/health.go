package http

import (
	"bytes"
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	json "github.com/goccy/go-json"
	"github.com/valyala/fasthttp"

	"github.com/lms-platform/userservice"
	"github.com/lms-platform/userservice/metricshelp"
)

// criticalCheck is the dependency without which the service is unhealthy;
// any other one down only degrades it (CONTRACT.md, Details).
const criticalCheck = "database"

// The /health* bodies are the spec's bare shapes, without the envelope.
type healthBody struct {
	Status    string                      `json:"status"`
	Timestamp userservice.Time            `json:"timestamp"`
	Uptime    *int64                      `json:"uptime,omitempty"`
	Version   string                      `json:"version,omitempty"`
	Services  map[string]dependencyHealth `json:"services,omitempty"`
}

type dependencyHealth struct {
	Status       string `json:"status"` // connected or disconnected
	ResponseTime int64  `json:"responseTime"`
}

func (s *Server) uptime() *int64 {
	u := int64(time.Since(s.deps.Health.Started).Seconds())
	return &u
}

func (r *request) writeHealth(status int, body healthBody) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	r.writeJSON(status, b)
	return nil
}

// health answers GET /health.
func (s *Server) health(r *request) error {
	return r.writeHealth(fasthttp.StatusOK, healthBody{Status: "healthy", Timestamp: userservice.Now(), Uptime: s.uptime(), Version: s.deps.Health.Version})
}

// healthLive answers GET /health/live: the process answers.
func (s *Server) healthLive(r *request) error {
	return r.writeHealth(fasthttp.StatusOK, healthBody{Status: "alive", Timestamp: userservice.Now(), Uptime: s.uptime()})
}

// healthReady answers GET /health/ready: 503 until Health.Ready passes. The
// check is shared between concurrent probes and for HealthCacheTTL (probeCache).
func (s *Server) healthReady(r *request) error {
	ready := !s.draining.Load() // shutting down: send no new traffic here
	if ready {
		err, ok := s.readyProbe.get(r.ctx, s.cfg.HealthCheckTimeout)
		ready = ok && err == nil
	}
	if !ready {
		return r.writeHealth(fasthttp.StatusServiceUnavailable, healthBody{Status: "not ready", Timestamp: userservice.Now()})
	}
	return r.writeHealth(fasthttp.StatusOK, healthBody{Status: "ready", Timestamp: userservice.Now()})
}

// dependencyReport is one run of every /health/detailed check, by name.
type dependencyReport map[string]dependencyHealth

// checkDependencies runs every check in parallel, each with its own timeout,
// so one hung dependency cannot hang the probe.
func (s *Server) checkDependencies(ctx context.Context) dependencyReport {
	names := make([]string, 0, len(s.deps.Health.Checks))
	for name := range s.deps.Health.Checks {
		names = append(names, name)
	}
	sort.Strings(names)
	results := make([]dependencyHealth, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		check := s.deps.Health.Checks[name]
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = s.runCheck(ctx, check)
		}()
	}
	wg.Wait()
	report := make(dependencyReport, len(names))
	for i, name := range names {
		report[name] = results[i]
	}
	return report
}

// healthDetailed answers GET /health/detailed from the shared dependency report
// (probeCache): a flood of probes costs the dependencies one check per HealthCacheTTL.
func (s *Server) healthDetailed(r *request) error {
	report, ok := s.detailedProbe.get(r.ctx, s.cfg.HealthCheckTimeout+time.Second)
	body := healthBody{Status: "healthy", Timestamp: userservice.Now(), Uptime: s.uptime(), Version: s.deps.Health.Version,
		Services: make(map[string]dependencyHealth, len(report))}
	status := fasthttp.StatusOK
	if !ok { // the caller went away or timed out waiting: say nothing is known
		body.Status, status = "unhealthy", fasthttp.StatusServiceUnavailable
	}
	for name, d := range report {
		body.Services[name] = d
		if d.Status == "connected" {
			continue
		}
		if name == criticalCheck {
			body.Status, status = "unhealthy", fasthttp.StatusServiceUnavailable
		} else if body.Status == "healthy" {
			body.Status = "degraded"
		}
	}
	return r.writeHealth(status, body)
}

// runCheck runs one check under the check timeout. A check that ignores its
// context is abandoned at the deadline (its goroutine finishes on its own).
func (s *Server) runCheck(parent context.Context, check func(context.Context) error) dependencyHealth {
	ctx, cancel := context.WithTimeout(parent, s.cfg.HealthCheckTimeout)
	defer cancel()
	start := time.Now()
	done := make(chan error, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				done <- context.Canceled
			}
		}()
		done <- check(ctx)
	}()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		err = ctx.Err()
	}
	d := dependencyHealth{Status: "connected", ResponseTime: time.Since(start).Milliseconds()}
	if err != nil {
		d.Status = "disconnected"
	}
	return d
}

// metrics answers GET /metrics in the Prometheus text format.
func (s *Server) metrics(r *request) error {
	var buf bytes.Buffer
	if err := metricshelp.WritePrometheus(&buf); err != nil {
		return fmt.Errorf("cannot write the metrics: %w", err)
	}
	r.fc.Response.SetStatusCode(fasthttp.StatusOK)
	r.fc.Response.Header.SetContentType("text/plain; version=0.0.4; charset=utf-8")
	r.fc.Response.SetBody(buf.Bytes())
	return nil
}
