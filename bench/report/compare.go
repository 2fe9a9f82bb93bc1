package main

import (
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// comparison is one bench/compare.sh run: BASE and HEAD measured alternately,
// scenario by scenario, with the baseline after each pair.
type comparison struct {
	dir      string
	meta     map[string]string
	side     map[string]map[string]string // "base", "head": their .env
	order    []string
	rounds   int
	runs     map[string]*wrkRun // "<scenario>.<round>.<base|head|baseline>"
	profiles map[string]map[string]string
	metrics  map[string][]byte
}

var compareSides = []string{"base", "head"}

func loadComparison(dir string) (*comparison, error) {
	meta, err := readKV(filepath.Join(dir, "meta.env"))
	if err != nil {
		return nil, fmt.Errorf("cannot read the run's meta.env: %w", err)
	}
	c := &comparison{dir: dir, meta: meta, side: map[string]map[string]string{}, runs: map[string]*wrkRun{},
		profiles: map[string]map[string]string{}, metrics: map[string][]byte{}}
	c.order = strings.Fields(meta["scenarios"])
	c.rounds, _ = strconv.Atoi(meta["rounds"])
	for _, side := range compareSides {
		kv, err := readKV(filepath.Join(dir, side+".env"))
		if err != nil {
			return nil, fmt.Errorf("cannot read %s.env: %w", side, err)
		}
		c.side[side] = kv
		if b, err := os.ReadFile(filepath.Join(dir, side+".metrics.txt")); err == nil {
			c.metrics[side] = b
		}
	}
	for _, s := range c.order {
		for round := 1; round <= c.rounds; round++ {
			for _, who := range []string{"base", "head", "baseline"} {
				label := fmt.Sprintf("%s.%d.%s", s, round, who)
				c.runs[label] = loadWrk(dir, label)
			}
		}
	}
	for _, s := range strings.Fields(meta["profiles"]) {
		for _, side := range compareSides {
			m := map[string]string{}
			for _, kind := range []string{"cpu", "cpu-cum", "alloc-space", "alloc-objects"} {
				if b, err := os.ReadFile(filepath.Join(dir, s+"."+side+"."+kind+".txt")); err == nil {
					m[kind] = string(b)
				}
			}
			c.profiles[s+"."+side] = m
		}
	}
	return c, nil
}

// sideStats sums one side's runs of a scenario over the rounds.
type sideStats struct {
	requests float64
	seconds  float64
	cpu      float64
	errors   float64
	p50, p95 []float64 // per round, ms
	perRound []float64 // req/s per round
	ok       bool
	boxBusy  []float64
	loadavgs []string
}

func (c *comparison) stats(s, who string) *sideStats {
	st := &sideStats{}
	for round := 1; round <= c.rounds; round++ {
		r := c.runs[fmt.Sprintf("%s.%d.%s", s, round, who)]
		if r == nil || !r.ok {
			continue
		}
		st.ok = true
		st.requests += r.Stats.Requests
		st.seconds += r.Stats.DurationUS / 1e6
		st.cpu += r.f("cpu_seconds")
		st.errors += r.errors()
		st.p50 = append(st.p50, r.Stats.P50US/1000)
		st.p95 = append(st.p95, r.Stats.P95US/1000)
		st.perRound = append(st.perRound, r.rps())
		st.boxBusy = append(st.boxBusy, r.f("box_busy"))
		st.loadavgs = append(st.loadavgs, r.sample["loadavg"])
	}
	return st
}

func (st *sideStats) rps() float64 {
	if !st.ok || st.seconds == 0 {
		return math.NaN()
	}
	return st.requests / st.seconds
}

func (st *sideStats) cpuPerKReq() float64 {
	if !st.ok || st.requests == 0 {
		return math.NaN()
	}
	return st.cpu / st.requests * 1000
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// roundRatios is HEAD ÷ BASE in each round (the two runs measured back to back).
func roundRatios(head, base *sideStats) []float64 {
	var out []float64
	for i := 0; i < len(head.perRound) && i < len(base.perRound); i++ {
		out = append(out, head.perRound[i]/base.perRound[i])
	}
	return out
}

func ratioList(v []float64) string {
	parts := make([]string, len(v))
	for i, x := range v {
		parts[i] = ratio(x, 1)
	}
	return strings.Join(parts, ", ")
}

// writeGoalsCompare lists issue 16's targets that a comparison against a082b94
// (or any BASE) measures.
func (c *comparison) writeGoals(w io.Writer) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	p("## Against issue 16's targets (HEAD, this run)\n\n| goal | measured | met |\n|---|---|---|\n")
	for _, g := range []struct {
		s    string
		goal float64
	}{{"get_me", 0.5}, {"get_preferences", 0.4}} {
		h, b := c.stats(g.s, "head"), c.stats(g.s, "baseline")
		if !h.ok || !b.ok {
			continue
		}
		p("| %s ≥ %.0f%% of bare fasthttp | %s of %s req/s = %s | %s |\n", title(g.s), 100*g.goal, num(h.rps()), num(b.rps()),
			pct(h.rps()/b.rps()), yes(h.rps() >= g.goal*b.rps()))
	}
	for _, s := range writeScenarios {
		h, b := c.stats(s, "head"), c.stats(s, "base")
		if !h.ok || !b.ok {
			continue
		}
		p("| %s ≥ 2× BASE | %s ÷ %s req/s = %s | %s |\n", title(s), num(h.rps()), num(b.rps()), ratio(h.rps(), b.rps()), yes(h.rps() >= 2*b.rps()))
	}
	p("\n")
}

func (c *comparison) write(w io.Writer) {
	m := c.meta
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	base, head := c.side["base"], c.side["head"]
	p("# HEAD %s against BASE %s: %s on %s\n\n", head["commit"], base["commit"], m["date"], m["host"])
	p("Written by `%s` (bench/compare.sh, bench/report -compare).\n\n", m["command"])
	p("- BASE `%s`: %s\n- HEAD `%s`: %s\n\n", base["commit"], base["subject"], head["commit"], head["subject"])
	p("Machine: %s CPUs (%s), Linux %s; %s; %s. Load generator: wrk, %s threads, %s connections, on the same machine, with loadtest/wrk/*.lua. "+
		"%s seeded users per side (same seed, each side in its own schema), every actor warmed up first; services at LOG_LEVEL=%s, "+
		"rate limit effectively off (but counted, as in production). Each run lasts %s. In each of the %s rounds, scenario by scenario, "+
		"BASE and HEAD run back to back in alternating order, then the baseline (bench/baseline, a bare fasthttp JSON endpoint). "+
		"The machine is shared: other processes' load (see machine busy, load avg) moves absolute figures, the ratios between runs "+
		"measured back to back much less. The whole run took %ss; raw data `%s` (not committed).\n\n",
		m["cpus"], m["cpu_model"], m["kernel"], m["go"], m["wrk"], m["wrk_threads"], m["wrk_conns"], m["users"], m["log_level"],
		m["duration"], m["rounds"], m["total_seconds"], filepath.Base(c.dir))

	c.writeGoals(w)

	p("## Throughput (closed loop)\n\n")
	p("req/s is all requests of a side's runs over their total time; HEAD ÷ BASE per round compares the two runs measured back to back. " +
		"CPU per 1k req is the service process's own CPU time (user+system) per thousand requests.\n\n")
	p("| scenario | BASE req/s | HEAD req/s | HEAD ÷ BASE | per round | p50 BASE → HEAD | p95 BASE → HEAD | CPU per 1k req BASE → HEAD | errors BASE / HEAD |\n")
	p("|---|---|---|---|---|---|---|---|---|\n")
	for _, s := range c.order {
		b, h := c.stats(s, "base"), c.stats(s, "head")
		p("| %s | %s | %s | **%s** | %s | %s → %s | %s → %s | %.3f → %.3f s | %.0f / %.0f |\n", title(s), num(b.rps()), num(h.rps()),
			ratio(h.rps(), b.rps()), ratioList(roundRatios(h, b)), ms(median(b.p50)), ms(median(h.p50)), ms(median(b.p95)), ms(median(h.p95)),
			b.cpuPerKReq(), h.cpuPerKReq(), b.errors, h.errors)
	}

	p("\n## Against the bare baseline (same rounds)\n\n")
	p("| scenario | baseline req/s | BASE ÷ baseline | HEAD ÷ baseline | CPU per req HEAD ÷ baseline | machine busy (HEAD runs) | load avg at HEAD runs' start |\n|---|---|---|---|---|---|---|\n")
	for _, s := range c.order {
		b, h, bl := c.stats(s, "base"), c.stats(s, "head"), c.stats(s, "baseline")
		p("| %s | %s | %s | %s | %s | %s | %s |\n", title(s), num(bl.rps()), pct(b.rps()/bl.rps()), pct(h.rps()/bl.rps()),
			ratio(h.cpuPerKReq(), bl.cpuPerKReq()), pct(median(h.boxBusy)), strings.Join(h.loadavgs, "; "))
	}

	p("\n")
	c.writeCPUShares(w)

	p("## Memory\n\n| | BASE | HEAD |\n|---|---|---|\n")
	users, _ := strconv.ParseFloat(m["users"], 64)
	row := func(name string, f func(kv map[string]string) string) {
		p("| %s | %s | %s |\n", name, f(base), f(head))
	}
	row("RSS after start", func(kv map[string]string) string { return mib(kb(kv["idle_rss_kb"])) })
	row("RSS with every user active (after the warm-up)", func(kv map[string]string) string { return mib(kb(kv["active_rss_kb"])) })
	row("RSS growth per activated user", func(kv map[string]string) string {
		d := kb(kv["active_rss_kb"]) - kb(kv["idle_rss_kb"])
		if users == 0 || math.IsNaN(d) {
			return "–"
		}
		return fmt.Sprintf("%.1f KiB", d/users)
	})
	row("RSS at the end", func(kv map[string]string) string { return mib(kb(kv["final_rss_kb"])) })
	row("exit status after SIGTERM", func(kv map[string]string) string { return kv["service_exit"] })
	p("\n")
	for _, side := range compareSides {
		if s := batchSummary(c.metrics[side]); s != "" {
			p("- %s group commit: %s.\n", strings.ToUpper(side), s)
		}
		if s := snapshotSummary(c.metrics[side]); s != "" {
			p("- %s Redis snapshots: %s.\n", strings.ToUpper(side), s)
		}
	}

	if len(c.profiles) > 0 {
		p("\n## Profiles (an extra closed-loop run per side after the rounds; `go tool pprof -top`)\n")
		for _, s := range strings.Fields(m["profiles"]) {
			for _, side := range []string{"head", "base"} {
				pr := c.profiles[s+"."+side]
				writeProfile(w, fmt.Sprintf("%s, %s (%s)", title(s), strings.ToUpper(side), c.side[side]["commit"]),
					pr["cpu"], pr["cpu-cum"], pr["alloc-space"], pr["alloc-objects"])
			}
		}
	}

	p("\n## Every run\n\n| run | req/s | p50 | p95 | p99 | errors | service CPU | wrk CPU | machine busy | load avg |\n|---|---|---|---|---|---|---|---|---|---|\n")
	for round := 1; round <= c.rounds; round++ {
		for _, s := range c.order {
			for _, who := range []string{"base", "head", "baseline"} {
				label := fmt.Sprintf("%s.%d.%s", s, round, who)
				r := c.runs[label]
				p("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", label, num(r.rps()), ms(r.ms(r.Stats.P50US)), ms(r.ms(r.Stats.P95US)),
					ms(r.ms(r.Stats.P99US)), r.errText(), num(r.f("cpu_cores")), num(r.f("wrk_cpu_cores")), pct(r.f("box_busy")), r.sample["loadavg"])
			}
		}
	}
}
