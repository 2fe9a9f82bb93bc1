package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
)

// cpuShare is where the machine's CPU went per request in one side's runs of a
// scenario: milliseconds of CPU time per request by process name (from the
// samples' top_cpu, cores during the run), and the whole machine's busy time per
// request (machine busy × CPUs), which also holds what no listed process explains
// (other processes of this shared box, the kernel's own work).
type cpuShare struct {
	byName   map[string]float64 // ms per request
	machine  float64            // ms per request
	requests float64
}

// processGroups are the columns of the CPU-per-request table: the service under
// test, the servers it writes to, and the load generator. The other side's
// service (idle while this side runs) counts under "other".
var processGroups = []struct{ name, label string }{
	{"userservice", "service"},
	{"postgres", "PostgreSQL"},
	{"beam.smp", "RabbitMQ"},
	{"redis-server", "Redis"},
	{"wrk", "wrk"},
}

// parseTopCPU reads a top_cpu sample ("name=cores name=cores ...").
func parseTopCPU(v string) map[string]float64 {
	out := map[string]float64{}
	for _, f := range strings.Fields(v) {
		name, cores, ok := strings.Cut(f, "=")
		if !ok {
			continue
		}
		if c, err := strconv.ParseFloat(cores, 64); err == nil {
			out[name] += c
		}
	}
	return out
}

// cpuShares sums the rounds of one side of a scenario.
func (c *comparison) cpuShares(s, who string) *cpuShare {
	cpus, _ := strconv.ParseFloat(c.meta["cpus"], 64)
	sh := &cpuShare{byName: map[string]float64{}}
	var machineSeconds float64
	coreSeconds := map[string]float64{}
	for round := 1; round <= c.rounds; round++ {
		r := c.runs[fmt.Sprintf("%s.%d.%s", s, round, who)]
		if r == nil || !r.ok {
			continue
		}
		wall := r.f("wall_seconds")
		if math.IsNaN(wall) || wall <= 0 {
			continue
		}
		sh.requests += r.Stats.Requests
		machineSeconds += r.f("box_busy") * cpus * wall
		for name, cores := range parseTopCPU(r.sample["top_cpu"]) {
			coreSeconds[name] += cores * wall
		}
		// wrk starts after the first /proc snapshot, so top_cpu misses it; the
		// harness samples it on its own.
		if v := r.f("wrk_cpu_cores"); !math.IsNaN(v) {
			coreSeconds["wrk"] = coreSeconds["wrk"] + v*wall
		}
	}
	if sh.requests == 0 {
		return nil
	}
	for name, v := range coreSeconds {
		sh.byName[name] = v / sh.requests * 1000
	}
	sh.machine = machineSeconds / sh.requests * 1000
	return sh
}

// writeCPUShares writes, per scenario and side, the CPU time per request of each
// process group, and for the write scenarios what a 2× target leaves: the machine
// time per request at twice BASE's rate with the machine as busy as in HEAD's runs.
func (c *comparison) writeCPUShares(w io.Writer) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	p("## Where the machine's CPU went, per request\n\n")
	p("CPU time per request (ms) of each process during the runs (user+system, from /proc), summed over the rounds; " +
		"machine is the busy time of all CPUs per request, so machine minus the listed processes is what other processes " +
		"of this shared box and the kernel took. For the write scenarios, 2× BASE needs the whole machine's time per request " +
		"at or below the last column (BASE's machine time per request halved).\n\n")
	p("| scenario | side |")
	for _, g := range processGroups {
		p(" %s |", g.label)
	}
	p(" listed | machine | 2× BASE needs machine ≤ |\n|---|---|%s---|---|---|\n", strings.Repeat("---|", len(processGroups)))
	for _, s := range c.order {
		base := c.cpuShares(s, "base")
		for _, who := range []string{"base", "head", "baseline"} {
			sh := c.cpuShares(s, who)
			if sh == nil {
				continue
			}
			cells := make([]string, 0, len(processGroups))
			var listed float64
			for _, g := range processGroups {
				name := g.name
				if who == "baseline" && name == "userservice" {
					name = "baseline"
				}
				v := sh.byName[name]
				listed += v
				cells = append(cells, fmt.Sprintf("%.3f", v))
			}
			need := "–"
			if who == "head" && base != nil && slices.Contains(writeScenarios, s) {
				need = fmt.Sprintf("%.3f", base.machine/2)
			}
			p("| %s | %s | %s | %.3f | %.3f | %s |\n", title(s), who, strings.Join(cells, " | "), listed, sh.machine, need)
		}
	}
	p("\n")
}

// writeScenarios are the scenarios issue 16 sets a 2× target for.
var writeScenarios = []string{"put_me", "put_preference", "post_enrollment", "put_progress"}
