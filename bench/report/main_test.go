package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReport(t *testing.T) {
	r, err := load("testdata/run")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	r.write(&buf)
	out := buf.String()
	for _, want := range []string{
		// the wrk closed loop (20000 req/s) counts against Node, not k6's
		"| GET /me ≥ 50× Node (359 req/s) | 20000 req/s (wrk) = 56× | yes |",
		"| GET /me ≥ 50% of bare fasthttp (wrk, same run) | 20000 of 50000 req/s = 40.00% | **no** |",
		// CPU per 1k requests: 20 s / 400k = 0.050 s; the baseline's 10 s / 1M, so 5×
		"| GET /me | 20000 | 2.50 ms | 6.00 ms | 12.0 ms | 4 | 1.0 | 0.050 s | 0.5 | 99.00% | 50000 | 40.00% | 5.00× |",
		"| GET /me | userservice=1.00, wrk=0.50 | baseline=0.50 |",
		"Allocations during the run, bytes (`-sample_index=alloc_space`)",
		// ratios to the baseline: rps 0.5, p95 6/3, CPU per request (20/400k)/(10/800k), RSS 64/8 MiB
		"| GET /me | 40000 | 0.50× | 2.00× | 2.00× | 2.25× | 4.00× | 8.00× |",
		"| mix at 1000 req/s: p95 < 5 ms | 4.50 ms | yes |",
		"| mix at 1000 req/s: p95 < 5 ms for search | 41.0 ms | **no** |",
		"| mix at 1000 req/s: 0 errors (Node: 19% failed) | 2 (0.01%), 10 dropped | **no** |",
		"**fail**: `http_req_failed rate==0`",
		"| search | 15.0 ms | 41.0 ms | 60.0 ms | 90.0 ms | 500 ms |",
		"| idle actor ≤ 2 KB | 1234 bytes | yes |",
		"heap per user 8462 bytes (state 6848, actor 1613)",
		"about 4.1 KiB",
		"10.0 mutations per PostgreSQL commit",
		"Redis snapshots: 32 snapshot writes for 1000 committed mutations (0.03 per mutation; 90 saves coalesced)",
		"| actors | BenchmarkActorRoundTrip-2 | 500000 | 2100 ns/op, 320 B/op, 6 allocs/op |",
		"| persistence/postgres | BenchmarkWriterBatch-2 | 20000 | 55000 ns/op, 18000 mutations/s, 12.5 mutations/batch |",
		"| 99.00% |",
		"| GET /me | k6=0.80, userservice=0.62, redis-server=0.16 | – | – |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the report lacks %q", want)
		}
	}
	if t.Failed() {
		t.Log(out)
	}
}

func TestRunWritesFile(t *testing.T) {
	out := filepath.Join(t.TempDir(), "r.md")
	if err := run([]string{"-dir", "testdata/run", "-out", out}, io.Discard); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte("# Benchmark results: 2026-01-02T03:04:05Z on box")) {
		t.Errorf("unexpected start: %.80q", b)
	}
	if err := run([]string{"-dir", filepath.Join(t.TempDir(), "missing")}, io.Discard); err == nil {
		t.Error("a folder without meta.env was accepted")
	}
}

func TestSearchCacheSummary(t *testing.T) {
	metrics := strings.Join([]string{
		`# TYPE user_service_cache_hits_total counter`,
		`user_service_cache_hits_total{cache="snapshot"} 500`,
		`user_service_cache_hits_total{cache="search"} 90`,
		`user_service_cache_misses_total{cache="search",reason="absent"} 8`,
		`user_service_cache_misses_total{cache="search",reason="error"} 2`,
		`user_service_cache_misses_total{cache="snapshot",reason="absent"} 7`,
	}, "\n")
	if got, want := searchCacheSummary([]byte(metrics)), "90 hits, 10 misses (90.0% of searches answered from Redis)"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	skipping := metrics + "\nuser_service_search_cache_skipped_total 100\n"
	if got, want := searchCacheSummary([]byte(skipping)), "90 hits, 10 misses, 100 not looked up (the cache kept missing) (45.0% of searches answered from Redis)"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if got := searchCacheSummary([]byte(`user_service_cache_hits_total{cache="snapshot"} 5`)); got != "" {
		t.Errorf("no searches: got %q", got)
	}
}

func TestCompare(t *testing.T) {
	c, err := loadComparison("testdata/compare")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	c.write(&buf)
	out := buf.String()
	for _, want := range []string{
		"# HEAD bbbb against BASE aaaa",
		// GET /me: 210k vs 230k requests over 20 s each; per round 1.20 and 1.00
		"| GET /me | 10500 | 11500 | **1.10×** | 1.20×, 1.00× | 3.00 ms → 2.00 ms | 9.00 ms → 8.00 ms | 0.095 → 0.078 s | 0 / 0 |",
		"| PUT /me | 2000 | 4500 | **2.25×** | 2.00×, 2.50× |",
		"| GET /me ≥ 50% of bare fasthttp | 11500 of 40000 req/s = 28.75% | **no** |",
		"| PUT /me ≥ 2× BASE | 4500 ÷ 2000 req/s = 2.25× | yes |",
		"| RSS growth per activated user | 20.5 KiB | 5.1 KiB |",
		"### PUT /me, HEAD (bbbb)",
		"| put_me.1.head | 4000 | 5.00 ms | 15.0 ms |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the comparison lacks %q", want)
		}
	}
	if t.Failed() {
		t.Log(out)
	}
	if _, err := loadComparison(t.TempDir()); err == nil {
		t.Error("a folder without meta.env was accepted")
	}
}
