package main

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"

	json "github.com/goccy/go-json"
)

// wrkRun is one closed-loop wrk run (loadtest/wrk/*.lua, whose done() prints a
// `wrk-json {...}` line) and the /proc samples taken during it.
type wrkRun struct {
	ok     bool
	Stats  wrkStats
	sample map[string]string
}

type wrkStats struct {
	Requests      float64 `json:"requests"`
	DurationUS    float64 `json:"duration_us"`
	ConnectErrors float64 `json:"connect_errors"`
	ReadErrors    float64 `json:"read_errors"`
	WriteErrors   float64 `json:"write_errors"`
	StatusErrors  float64 `json:"status_errors"`
	Timeouts      float64 `json:"timeouts"`
	P50US         float64 `json:"p50_us"`
	P90US         float64 `json:"p90_us"`
	P95US         float64 `json:"p95_us"`
	P99US         float64 `json:"p99_us"`
}

func loadWrk(dir, label string) *wrkRun {
	r := &wrkRun{sample: map[string]string{}}
	if kv, err := readKV(filepath.Join(dir, label+".sample")); err == nil {
		r.sample = kv
	}
	b, err := os.ReadFile(filepath.Join(dir, label+".wrk"))
	if err != nil {
		return r
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		if j, ok := bytes.CutPrefix(line, []byte("wrk-json ")); ok {
			if json.Unmarshal(j, &r.Stats) == nil && r.Stats.DurationUS > 0 {
				r.ok = true
			}
		}
	}
	return r
}

func (r *wrkRun) rps() float64 {
	if !r.ok {
		return math.NaN()
	}
	return r.Stats.Requests / (r.Stats.DurationUS / 1e6)
}

// errors counts failed requests: transport errors, timeouts and answers ≥ 400.
func (r *wrkRun) errors() float64 {
	s := r.Stats
	return s.ConnectErrors + s.ReadErrors + s.WriteErrors + s.StatusErrors + s.Timeouts
}

func (r *wrkRun) errText() string {
	if !r.ok {
		return "no data"
	}
	return fmt.Sprintf("%.0f", r.errors())
}

func (r *wrkRun) ms(us float64) float64 {
	if !r.ok {
		return math.NaN()
	}
	return us / 1000
}

func (r *wrkRun) f(key string) float64 { return (&result{sample: r.sample}).f(key) }

// cpuPerKReq is the CPU time of the process under test per 1,000 requests.
func (r *wrkRun) cpuPerKReq() float64 {
	if !r.ok || r.Stats.Requests == 0 {
		return math.NaN()
	}
	return r.f("cpu_seconds") / r.Stats.Requests * 1000
}

// writeWrk writes the wrk closed loops of a `make bench` run: the service against
// the bare baseline measured right after it by the same script.
func (r *report) writeWrk(w io.Writer) {
	if len(r.wrk) == 0 {
		return
	}
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	p("## Closed loop with wrk (%s threads, %s connections): the maximum\n\n", r.meta["wrk_threads"], r.meta["wrk_conns"])
	p("wrk (%s) with the Lua scripts of loadtest/wrk/ costs a few microseconds per request, so unlike k6 it is not what limits "+
		"the figure; the baseline is driven by the same script right after the service. Errors are transport errors, timeouts "+
		"and answers ≥ 400. CPU per 1k req is the process's own CPU time per thousand requests.\n\n", r.meta["wrk"])
	p("| scenario | req/s | p50 | p95 | p99 | errors | CPU | CPU per 1k req | wrk CPU | machine busy | baseline req/s | ÷ baseline | CPU per req ÷ baseline |\n")
	p("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, s := range r.order {
		c, b := r.wrk[s], r.wrkBase[s]
		if c == nil || !c.ok {
			continue
		}
		p("| %s | %s | %s | %s | %s | %s | %s | %.3f s | %s | %s | %s | %s | %s |\n", title(s), num(c.rps()),
			ms(c.ms(c.Stats.P50US)), ms(c.ms(c.Stats.P95US)), ms(c.ms(c.Stats.P99US)), c.errText(),
			num(c.f("cpu_cores")), c.cpuPerKReq(), num(c.f("wrk_cpu_cores")), pct(c.f("box_busy")),
			num(b.rps()), pct(c.rps()/b.rps()), ratio(c.cpuPerKReq(), b.cpuPerKReq()))
	}
	p("\n")
}

// writeWrkCPU is writeCPU for the wrk runs.
func (r *report) writeWrkCPU(w io.Writer) {
	if len(r.wrk) == 0 {
		return
	}
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	p("\nDuring the wrk closed loops:\n\n| scenario | service | baseline |\n|---|---|---|\n")
	for _, s := range r.order {
		c, b := r.wrk[s], r.wrkBase[s]
		if c == nil {
			continue
		}
		p("| %s | %s | %s |\n", title(s), topCell(c.sample), topCell(b.sample))
	}
}

func topCell(sample map[string]string) string {
	v, ok := sample["top_cpu"]
	if !ok || v == "" {
		return "–"
	}
	return strings.ReplaceAll(v, " ", ", ")
}

// profileBlock formats a `pprof -top` listing: pprof's header lines dropped, at
// most n entries.
func profileBlock(listing string, n int) string {
	lines := strings.Split(strings.TrimSpace(listing), "\n")
	for len(lines) > 0 && !strings.HasPrefix(lines[0], "Duration:") && !strings.HasPrefix(lines[0], "Showing") {
		lines = lines[1:]
	}
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, "\n")
}
