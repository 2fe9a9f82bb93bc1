package main

import (
	"math"
	"strings"
	"testing"
)

func TestParseTopCPU(t *testing.T) {
	got := parseTopCPU("userservice=0.50 postgres=0.42 postgres=0.08 junk beam.smp=x wrk=0.10")
	want := map[string]float64{"userservice": 0.50, "postgres": 0.50, "wrk": 0.10}
	if len(got) != len(want) {
		t.Fatalf("parseTopCPU = %v, want %v", got, want)
	}
	for k, v := range want {
		if math.Abs(got[k]-v) > 1e-9 {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
}

// Two rounds of 10 s and 20 s: per request, each process's core-seconds over all
// requests, wrk from its own sample, and the machine from box_busy × CPUs.
func TestCPUShares(t *testing.T) {
	run := func(requests float64, wall, busy, wrk string, top string) *wrkRun {
		return &wrkRun{ok: true, Stats: wrkStats{Requests: requests, DurationUS: 1e7},
			sample: map[string]string{"wall_seconds": wall, "box_busy": busy, "wrk_cpu_cores": wrk, "top_cpu": top}}
	}
	c := &comparison{meta: map[string]string{"cpus": "2"}, rounds: 2, order: []string{"put_me"}, runs: map[string]*wrkRun{
		"put_me.1.head": run(10000, "10", "0.5", "0.1", "userservice=0.4 postgres=0.3"),
		"put_me.2.head": run(30000, "20", "1.0", "0.2", "userservice=0.6 postgres=0.5"),
		"put_me.1.base": run(5000, "10", "0.9", "0.1", "userservice=0.5 postgres=0.5"),
		"put_me.2.base": {ok: false},
	}}
	sh := c.cpuShares("put_me", "head")
	// service: (0.4×10 + 0.6×20) / 40,000 requests = 0.4 ms; postgres (3 + 10) / 40,000;
	// wrk (1 + 4) / 40,000; machine (0.5×2×10 + 1.0×2×20) / 40,000.
	for name, want := range map[string]float64{"userservice": 0.4, "postgres": 0.325, "wrk": 0.125} {
		if math.Abs(sh.byName[name]-want) > 1e-9 {
			t.Errorf("%s = %v ms, want %v", name, sh.byName[name], want)
		}
	}
	if math.Abs(sh.machine-1.25) > 1e-9 {
		t.Errorf("machine = %v ms, want 1.25", sh.machine)
	}
	if base := c.cpuShares("put_me", "base"); base == nil || math.Abs(base.machine-3.6) > 1e-9 {
		t.Errorf("base machine = %+v, want 3.6 ms (the failed round left out)", base)
	}
	if c.cpuShares("get_me", "head") != nil {
		t.Error("a scenario without runs has shares")
	}
	var b strings.Builder
	c.writeCPUShares(&b)
	if !strings.Contains(b.String(), "| PUT /me | head | 0.400 | 0.325 | 0.000 | 0.000 | 0.125 | 0.850 | 1.250 | 1.800 |") {
		t.Errorf("table lacks HEAD's row with 2× BASE's need (3.6 / 2):\n%s", b.String())
	}
}
