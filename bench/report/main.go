// Command report turns the raw data of one bench/run.sh run (wrk outputs, k6
// summary exports, /proc samples, micro-benchmark output, CPU and allocation
// profiles) into the Markdown file committed under bench/results/:
//
//	go run ./bench/report -dir bench/.work/<run> -out bench/results/<date>-<host>.md
//
// With -compare it reads a bench/compare.sh run instead (make bench-compare: two
// commits measured alternately) and writes their ratios.
//
// Every figure of the service is also given as a ratio to the bare fasthttp
// baseline measured in the same run, and the headline figures against the seed's
// Node implementation and the targets (issue 7).
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	json "github.com/goccy/go-json"
)

func main() {
	if err := run(os.Args[1:], os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		fmt.Fprintf(os.Stderr, "report: %v\n", err)
		os.Exit(1)
	}
}

func run(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "", "folder of one bench/run.sh run (required)")
	out := fs.String("out", "", "Markdown file to write (default stdout)")
	compare := fs.Bool("compare", false, "the folder is a bench/compare.sh run (make bench-compare)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" {
		return errors.New("-dir is required")
	}
	var buf bytes.Buffer
	if *compare {
		c, err := loadComparison(*dir)
		if err != nil {
			return err
		}
		c.write(&buf)
	} else {
		r, err := load(*dir)
		if err != nil {
			return err
		}
		r.write(&buf)
	}
	if *out == "" {
		_, err := os.Stdout.Write(buf.Bytes())
		return err
	}
	if err := os.WriteFile(*out, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("cannot write the report: %w", err)
	}
	return nil
}

// Scenario names and what the issue compares them with.
type scenarioInfo struct {
	Title     string
	NodeRPS   float64 // the seed's Node implementation, closed loop (0: not measured)
	NodeP95ms float64
	Goal      float64 // required multiple of NodeRPS (0: none)
	Kind      string  // the spec's p95 target class
}

var scenarios = map[string]scenarioInfo{
	"get_me":          {"GET /me", 359, 252, 50, "profile"},
	"put_me":          {"PUT /me", 321, 0, 20, "profile"},
	"get_preferences": {"GET preferences", 629, 0, 0, "profile"},
	"put_preference":  {"PUT preference category", 0, 0, 0, "profile"},
	"post_enrollment": {"POST enrollment", 293, 0, 15, "enrollment"},
	"put_progress":    {"PUT progress", 0, 0, 0, "enrollment"},
	"admin_search":    {"admin search", 45, 2400, 20, "search"},
	"mix":             {"mix", 0, 0, 0, "mixed"},
}

var specTargets = map[string]float64{"profile": 200, "search": 500, "enrollment": 300}

// trend is one k6 trend metric, in milliseconds.
type trend struct {
	Avg, Min, Med, P90, P95, P99, Max float64
	Thresholds                        map[string]bool
}

// k6 metric as exported by --summary-export.
type metric map[string]any

func (m metric) num(k string) float64 {
	if v, ok := m[k].(float64); ok {
		return v
	}
	return math.NaN()
}

// result is one k6 run and the /proc samples taken during it.
type result struct {
	ok         bool
	rps        float64
	count      float64
	dur        trend
	failed     float64 // requests
	failRate   float64
	checksFail float64
	dropped    float64
	kinds      map[string]trend // http_req_duration{kind:...}
	thresholds []threshold
	sample     map[string]string
}

type threshold struct {
	Metric, Expr string
	Crossed      bool
}

func (r *result) f(key string) float64 {
	v, err := strconv.ParseFloat(r.sample[key], 64)
	if err != nil {
		return math.NaN()
	}
	return v
}

// cpuPerKReq is the CPU time of the process under test per 1,000 requests.
func (r *result) cpuPerKReq() float64 {
	if r.count == 0 {
		return math.NaN()
	}
	return r.f("cpu_seconds") / r.count * 1000
}

func (r *result) passed() bool {
	for _, t := range r.thresholds {
		if t.Crossed {
			return false
		}
	}
	return true
}

func loadResult(dir, label string) *result {
	r := &result{kinds: map[string]trend{}, sample: map[string]string{}}
	if kv, err := readKV(filepath.Join(dir, label+".sample")); err == nil {
		r.sample = kv
	}
	b, err := os.ReadFile(filepath.Join(dir, label+".json"))
	if err != nil {
		return r
	}
	var doc struct {
		Metrics map[string]metric `json:"metrics"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return r
	}
	r.ok = true
	m := doc.Metrics
	r.rps, r.count = m["http_reqs"].num("rate"), m["http_reqs"].num("count")
	r.dur = toTrend(m["http_req_duration"])
	if f := m["http_req_failed"]; f != nil {
		r.failed, r.failRate = f.num("passes"), f.num("value")
	}
	if c := m["checks"]; c != nil {
		r.checksFail = c.num("fails")
	}
	if d := m["dropped_iterations"]; d != nil {
		r.dropped = d.num("count")
	}
	names := make([]string, 0, len(m))
	for name := range m {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if k, ok := strings.CutPrefix(name, "http_req_duration{kind:"); ok {
			r.kinds[strings.TrimSuffix(k, "}")] = toTrend(m[name])
		}
		if th, ok := m[name]["thresholds"].(map[string]any); ok {
			for expr, crossed := range th {
				c, _ := crossed.(bool)
				r.thresholds = append(r.thresholds, threshold{name, expr, c})
			}
		}
	}
	if math.IsNaN(r.failed) {
		r.failed = 0
	}
	return r
}

func toTrend(m metric) trend {
	t := trend{Avg: m.num("avg"), Min: m.num("min"), Med: m.num("med"), P90: m.num("p(90)"),
		P95: m.num("p(95)"), P99: m.num("p(99)"), Max: m.num("max")}
	return t
}

func readKV(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	kv := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			kv[k] = v
		}
	}
	return kv, nil
}

// report is everything one run left behind.
type report struct {
	dir         string
	meta        map[string]string
	order       []string
	closed      map[string]*result
	rate        map[string]*result
	base        map[string]*result
	baseRate    map[string]*result
	warmup      *result
	micro       []benchLine
	microErr    string
	perActor    string
	wrk         map[string]*wrkRun // the wrk closed loops, by scenario
	wrkBase     map[string]*wrkRun
	profiles    map[string]string
	cum         map[string]string
	allocSpace  map[string]string
	allocObjs   map[string]string
	batches     string
	searchCache string
	metricsRaw  []byte
	perUser     string // actors' TestActiveUserFootprint line
}

func load(dir string) (*report, error) {
	meta, err := readKV(filepath.Join(dir, "meta.env"))
	if err != nil {
		return nil, fmt.Errorf("cannot read the run's meta.env: %w", err)
	}
	r := &report{dir: dir, meta: meta, closed: map[string]*result{}, rate: map[string]*result{},
		base: map[string]*result{}, baseRate: map[string]*result{}, profiles: map[string]string{}, cum: map[string]string{},
		wrk: map[string]*wrkRun{}, wrkBase: map[string]*wrkRun{}, allocSpace: map[string]string{}, allocObjs: map[string]string{}}
	r.order = strings.Fields(meta["scenarios"])
	for _, s := range r.order {
		r.closed[s] = loadResult(dir, s+".closed")
		r.rate[s] = loadResult(dir, s+".rate")
		r.base[s] = loadResult(dir, s+".baseline")
		r.baseRate[s] = loadResult(dir, s+".baseline-rate")
		if b, err := os.ReadFile(filepath.Join(dir, s+".cpu.txt")); err == nil {
			r.profiles[s] = string(b)
		}
		if b, err := os.ReadFile(filepath.Join(dir, s+".cpu-cum.txt")); err == nil {
			r.cum[s] = string(b)
		}
		if b, err := os.ReadFile(filepath.Join(dir, s+".alloc-space.txt")); err == nil {
			r.allocSpace[s] = string(b)
		}
		if b, err := os.ReadFile(filepath.Join(dir, s+".alloc-objects.txt")); err == nil {
			r.allocObjs[s] = string(b)
		}
		if _, err := os.Stat(filepath.Join(dir, s+".wrk.wrk")); err == nil {
			r.wrk[s] = loadWrk(dir, s+".wrk")
			r.wrkBase[s] = loadWrk(dir, s+".wrk-baseline")
		}
	}
	r.warmup = loadResult(dir, "warmup")
	if b, err := os.ReadFile(filepath.Join(dir, "micro.txt")); err == nil {
		r.micro, r.microErr = parseBench(b)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "footprint.txt")); err == nil {
		if m := regexp.MustCompile(`heap per idle actor: (\d+) bytes`).FindSubmatch(b); m != nil {
			r.perActor = string(m[1])
		}
		if m := regexp.MustCompile(`\d+ active typical users: [^\n]*`).Find(b); m != nil {
			r.perUser = string(m)
		}
	}
	if b, err := os.ReadFile(filepath.Join(dir, "metrics.txt")); err == nil {
		r.metricsRaw = b
		r.batches = batchSummary(b)
		r.searchCache = searchCacheSummary(b)
	}
	return r, nil
}

// benchLine is one line of `go test -bench` output.
type benchLine struct {
	Pkg, Name string
	Iters     string
	Values    [][2]string // value, unit
}

func parseBench(b []byte) ([]benchLine, string) {
	var out []benchLine
	var failures []string
	pkg := ""
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if p, ok := strings.CutPrefix(line, "pkg: "); ok {
			pkg = strings.TrimPrefix(p, "github.com/lms-platform/userservice/")
			continue
		}
		if strings.HasPrefix(line, "FAIL") || strings.HasPrefix(line, "--- FAIL") {
			failures = append(failures, line)
			continue
		}
		if !strings.HasPrefix(line, "Benchmark") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 4 || len(f)%2 != 0 {
			continue
		}
		bl := benchLine{Pkg: pkg, Name: f[0], Iters: f[1]}
		for i := 2; i+1 < len(f); i += 2 {
			bl.Values = append(bl.Values, [2]string{f[i], f[i+1]})
		}
		out = append(out, bl)
	}
	return out, strings.Join(failures, "; ")
}

// eachSample calls f with every "name value" sample line of a /metrics scrape.
func eachSample(b []byte, f func(name string, v float64)) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) != 2 {
			continue
		}
		if v, err := strconv.ParseFloat(fields[1], 64); err == nil {
			f(fields[0], v)
		}
	}
}

// batchSummary reads the write batch histogram from the service's /metrics at the
// end of the run: how many mutations one PostgreSQL commit carried on average.
func batchSummary(b []byte) string {
	var sum, count float64
	eachSample(b, func(name string, v float64) {
		switch {
		case strings.HasPrefix(name, "user_service_write_batch_size_sum"):
			sum += v
		case strings.HasPrefix(name, "user_service_write_batch_size_count"):
			count += v
		}
	})
	if count == 0 {
		return ""
	}
	return fmt.Sprintf("%.0f write batches committed %.0f mutations: %.1f mutations per PostgreSQL commit on average", count, sum, sum/count)
}

// snapshotSummary reads the snapshot saver's counters from the service's /metrics at
// the end of the run: Redis snapshot writes against committed mutations.
func snapshotSummary(b []byte) string {
	var written, coalesced, mutations float64
	eachSample(b, func(name string, v float64) {
		switch {
		case strings.HasPrefix(name, "user_service_snapshot_writes_total{"):
			written += v
		case name == "user_service_snapshot_writes_coalesced_total":
			coalesced += v
		case strings.HasPrefix(name, "user_service_write_batch_size_sum"):
			mutations += v
		}
	})
	if mutations == 0 {
		return ""
	}
	return fmt.Sprintf("%.0f snapshot writes for %.0f committed mutations (%.2f per mutation; %.0f saves coalesced)", written, mutations, written/mutations, coalesced)
}

// searchCacheSummary reads the admin search cache's counters from the service's
// /metrics at the end of the run.
func searchCacheSummary(b []byte) string {
	var hits, misses, skipped float64
	eachSample(b, func(name string, v float64) {
		switch {
		case name == `user_service_cache_hits_total{cache="search"}`:
			hits += v
		case strings.HasPrefix(name, `user_service_cache_misses_total{cache="search",`):
			misses += v
		case name == `user_service_search_cache_skipped_total`:
			skipped += v
		}
	})
	searches := hits + misses + skipped
	if searches == 0 {
		return ""
	}
	notLooked := ""
	if skipped > 0 {
		notLooked = fmt.Sprintf(", %.0f not looked up (the cache kept missing)", skipped)
	}
	return fmt.Sprintf("%.0f hits, %.0f misses%s (%.1f%% of searches answered from Redis)", hits, misses, notLooked, 100*hits/searches)
}

// Formatting helpers; NaN prints as "–".

func ms(v float64) string {
	switch {
	case math.IsNaN(v):
		return "–"
	case v < 10:
		return fmt.Sprintf("%.2f ms", v)
	case v < 100:
		return fmt.Sprintf("%.1f ms", v)
	default:
		return fmt.Sprintf("%.0f ms", v)
	}
}

func num(v float64) string {
	if math.IsNaN(v) {
		return "–"
	}
	if v >= 100 {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.1f", v)
}

func ratio(a, b float64) string {
	if math.IsNaN(a) || math.IsNaN(b) || b == 0 {
		return "–"
	}
	r := a / b
	if r >= 10 {
		return fmt.Sprintf("%.0f×", r)
	}
	return fmt.Sprintf("%.2f×", r)
}

func pct(v float64) string {
	if math.IsNaN(v) {
		return "–"
	}
	return fmt.Sprintf("%.2f%%", v*100)
}

func mib(kb float64) string {
	if math.IsNaN(kb) {
		return "–"
	}
	return fmt.Sprintf("%.0f MiB", kb/1024)
}

func yes(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}

func title(s string) string {
	if i, ok := scenarios[s]; ok {
		return i.Title
	}
	return s
}

func errs(r *result) string {
	if !r.ok {
		return "no data"
	}
	s := fmt.Sprintf("%.0f (%s)", r.failed, pct(r.failRate))
	if r.checksFail > 0 {
		s += fmt.Sprintf(", %.0f failed checks", r.checksFail)
	}
	return s
}

func (r *report) write(w io.Writer) {
	m := r.meta
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	p("# Benchmark results: %s on %s\n\n", m["date"], m["host"])
	var gens []string
	for _, g := range []string{m["wrk"], m["k6"]} {
		if g != "" {
			gens = append(gens, g)
		}
	}
	p("Written by `make bench` (bench/run.sh, bench/report). Machine: %s CPUs (%s), %s, Linux %s; %s; %s; commit %s.\n\n",
		m["cpus"], m["cpu_model"], m["mem_total"], m["kernel"], m["go"], strings.Join(gens, ", "), m["commit"])
	p("Setup: %s seeded users (seeded in %ss) plus 5 admins, every actor warmed up first; each run lasts %s; closed loops with wrk and with k6 at %s VUs; "+
		"arrival rate %s req/s; load generators on the same machine; service LOG_LEVEL=%s, rate limit effectively off (but counted in Redis as in production). "+
		"The baseline is bench/baseline, a bare fasthttp JSON endpoint driven by the same script in the same run. "+
		"CPU is the process's user+system time divided by wall time (1.00 = one core busy); RSS is the maximum sampled; "+
		"machine busy is the share of all CPUs' time not idle during the run (the service, k6, PostgreSQL, Redis, RabbitMQ and whatever else runs on this shared box); "+
		"load avg is /proc/loadavg when the run started. "+
		"The whole run took %ss. Raw data: `%s` (not committed).\n\n",
		m["users"], m["seed_seconds"], m["duration"], m["vus"], m["rate"], m["log_level"], m["total_seconds"], filepath.Base(r.dir))

	r.writeGoals(w)
	r.writeWrk(w)
	if r.hasK6() {
		r.writeK6(w)
	}

	p("\n## Memory\n\n")
	idle, active, final := kb(m["idle_rss_kb"]), kb(m["active_rss_kb"]), kb(m["final_rss_kb"])
	users, _ := strconv.ParseFloat(m["users"], 64)
	p("- Service RSS: %s after start, %s with all %s users' actors active (after the warm-up), %s at the end.\n",
		mib(idle), mib(active), m["users"], mib(final))
	if users > 0 && !math.IsNaN(active-idle) {
		p("- RSS growth per activated user (actor, state with its preferences and enrollments, caches): about %.1f KiB.\n", (active-idle)/users)
	}
	if r.perActor != "" {
		p("- Idle actor overhead without its state (actors' TestIdleActorFootprint, 20,000 actors): %s bytes per actor (budget 2048).\n", r.perActor)
	}
	if r.perUser != "" {
		p("- Active typical user (actors' TestActiveUserFootprint: profile, 16 preferences, 3 enrollments, 2 sessions): %s.\n", r.perUser)
	}
	if r.batches != "" {
		p("- Group commit: %s.\n", r.batches)
	}
	if s := snapshotSummary(r.metricsRaw); s != "" {
		p("- Redis snapshots: %s.\n", s)
	}
	if r.searchCache != "" {
		p("- Admin search cache (every scenario, warm-up included): %s.\n", r.searchCache)
	}
	p("- Service exit status after SIGTERM at the end of the run: %s.\n", m["service_exit"])

	r.writeCPU(w)
	r.writeMicro(w)
	r.writeProfiles(w)

	p("\n## The seed's Node implementation (issue 7), for comparison\n\n")
	p("| route | req/s | p95 |\n|---|---|---|\n| GET /me | 359 | 252 ms |\n| PUT /me | 321 | |\n| GET preferences | 629 | |\n| POST enrollment | 293 | |\n| admin search | 45 | 2.4 s |\n\n")
	p("At a fixed 1,000 req/s it failed 19%% of requests. The issue also quotes a bare fasthttp JSON endpoint at about 35,000 req/s on the same kind of box " +
		"(with a lighter load generator than k6; with k6 on the same two cores the baseline above is the figure to compare with).\n")
}

// hasK6 reports whether the run has k6 results (BENCH_K6=0 runs wrk only).
func (r *report) hasK6() bool {
	for _, c := range r.closed {
		if c.ok {
			return true
		}
	}
	return false
}

// writeK6 writes the k6 runs: closed loop and constant arrival rate, each against
// the baseline.
func (r *report) writeK6(w io.Writer) {
	m := r.meta
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	p("## Closed loop with k6 (%s VUs)\n\n", m["vus"])
	p("| scenario | req/s | p50 | p95 | p99 | errors | CPU | CPU per 1k req | RSS | k6 CPU | machine busy | load avg |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, s := range r.order {
		c := r.closed[s]
		p("| %s | %s | %s | %s | %s | %s | %s | %s s | %s | %s | %s | %s |\n", title(s), num(c.rps), ms(c.dur.Med), ms(c.dur.P95), ms(c.dur.P99),
			errs(c), num(c.f("cpu_cores")), fmt.Sprintf("%.3f", c.cpuPerKReq()), mib(c.f("rss_max_kb")), num(c.f("k6_cpu_cores")),
			pct(c.f("box_busy")), c.sample["loadavg"])
	}
	p("\nThe same, as ratios to the baseline measured right after it (throughput: higher is better; latency, CPU per request, RSS: lower is better):\n\n")
	p("| scenario | baseline req/s | req/s ÷ baseline | p50 ÷ | p95 ÷ | p99 ÷ | CPU per req ÷ | RSS ÷ |\n|---|---|---|---|---|---|---|---|\n")
	for _, s := range r.order {
		c, b := r.closed[s], r.base[s]
		p("| %s | %s | %s | %s | %s | %s | %s | %s |\n", title(s), num(b.rps), ratio(c.rps, b.rps), ratio(c.dur.Med, b.dur.Med),
			ratio(c.dur.P95, b.dur.P95), ratio(c.dur.P99, b.dur.P99), ratio(c.cpuPerKReq(), b.cpuPerKReq()), ratio(c.f("rss_max_kb"), b.f("rss_max_kb")))
	}

	p("\n## Constant arrival rate (%s req/s) with the spec's thresholds\n\n", m["rate"])
	p("Thresholds: 0%% failed requests, all checks passing, no dropped arrivals, p95 below the spec's target per kind " +
		"(profile 200 ms, enrollment 300 ms, search 500 ms).\n\n")
	p("| scenario | req/s | p50 | p95 | p99 | errors | dropped | thresholds | CPU | RSS | p95 ÷ baseline | CPU per req ÷ baseline |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, s := range r.order {
		c, b := r.rate[s], r.baseRate[s]
		p("| %s | %s | %s | %s | %s | %s | %.0f | %s | %s | %s | %s | %s |\n", title(s), num(c.rps), ms(c.dur.Med), ms(c.dur.P95), ms(c.dur.P99),
			errs(c), c.dropped, thresholdText(c), num(c.f("cpu_cores")), mib(c.f("rss_max_kb")), ratio(c.dur.P95, b.dur.P95), ratio(c.cpuPerKReq(), b.cpuPerKReq()))
	}
	if mix, ok := r.rate["mix"]; ok && len(mix.kinds) > 0 {
		p("\nThe mix at %s req/s by kind of request:\n\n| kind | p50 | p95 | p99 | max | spec target (p95) |\n|---|---|---|---|---|---|\n", m["rate"])
		kinds := make([]string, 0, len(mix.kinds))
		for k := range mix.kinds {
			kinds = append(kinds, k)
		}
		sort.Strings(kinds)
		for _, k := range kinds {
			t := mix.kinds[k]
			p("| %s | %s | %s | %s | %s | %s |\n", k, ms(t.Med), ms(t.P95), ms(t.P99), ms(t.Max), ms(specTargets[k]))
		}
	}

}

func kb(s string) float64 {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return math.NaN()
	}
	return v
}

func thresholdText(r *result) string {
	if !r.ok {
		return "no data"
	}
	var crossed []string
	for _, t := range r.thresholds {
		if t.Crossed {
			crossed = append(crossed, "`"+t.Metric+" "+t.Expr+"`")
		}
	}
	if len(crossed) == 0 {
		return "pass"
	}
	sort.Strings(crossed)
	return "**fail**: " + strings.Join(crossed, ", ")
}

// closedRPS is a scenario's closed-loop maximum: wrk's when the run has it (k6
// on the same cores measures itself more than the service), else k6's.
func (r *report) closedRPS(s string) (float64, string, bool) {
	if c := r.wrk[s]; c != nil && c.ok {
		return c.rps(), "wrk", true
	}
	if c := r.closed[s]; c != nil && c.ok {
		return c.rps, "k6", true
	}
	return math.NaN(), "", false
}

func (r *report) writeGoals(w io.Writer) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	p("## Against the issues' targets\n\n| goal | measured | met |\n|---|---|---|\n")
	// Issue 16: shares of the bare baseline, wrk against both in the same run.
	for _, g := range []struct {
		s    string
		goal float64
	}{{"get_me", 0.5}, {"get_preferences", 0.4}} {
		c, b := r.wrk[g.s], r.wrkBase[g.s]
		if c == nil || !c.ok || b == nil || !b.ok {
			continue
		}
		p("| %s ≥ %.0f%% of bare fasthttp (wrk, same run) | %s of %s req/s = %s | %s |\n", title(g.s), 100*g.goal,
			num(c.rps()), num(b.rps()), pct(c.rps()/b.rps()), yes(c.rps() >= g.goal*b.rps()))
	}
	if c, ok := r.rate["mix"]; ok && c.ok {
		p("| mix at %s req/s: p95 < 5 ms | %s | %s |\n", r.meta["rate"], ms(c.dur.P95), yes(c.dur.P95 < 5))
		kinds := make([]string, 0, len(c.kinds))
		for k := range c.kinds {
			kinds = append(kinds, k)
		}
		sort.Strings(kinds)
		for _, k := range kinds {
			p("| mix at %s req/s: p95 < 5 ms for %s | %s | %s |\n", r.meta["rate"], k, ms(c.kinds[k].P95), yes(c.kinds[k].P95 < 5))
		}
		p("| mix at %s req/s: 0 errors (Node: 19%% failed) | %s, %.0f dropped | %s |\n", r.meta["rate"], errs(c), c.dropped, yes(c.failed == 0 && c.dropped == 0 && c.checksFail == 0))
	}
	// Issue 7: multiples of the seed's Node implementation.
	for _, s := range []string{"get_me", "put_me", "post_enrollment", "admin_search"} {
		rps, gen, ok := r.closedRPS(s)
		if !ok {
			continue
		}
		i := scenarios[s]
		p("| %s ≥ %.0f× Node (%.0f req/s) | %s req/s (%s) = %s | %s |\n", i.Title, i.Goal, i.NodeRPS, num(rps), gen, ratio(rps, i.NodeRPS), yes(rps >= i.Goal*i.NodeRPS))
	}
	if c, ok := r.closed["admin_search"]; ok && c.ok {
		p("| admin search p95 < 50 ms on %s users (k6 closed loop) | %s | %s |\n", r.meta["users"], ms(c.dur.P95), yes(c.dur.P95 < 50))
	}
	if c, ok := r.rate["admin_search"]; ok && c.ok {
		p("| admin search p95 < 50 ms at %s req/s | %s | %s |\n", r.meta["rate"], ms(c.dur.P95), yes(c.dur.P95 < 50))
	}
	if r.perActor != "" {
		n, _ := strconv.Atoi(r.perActor)
		p("| idle actor ≤ 2 KB | %s bytes | %s |\n", r.perActor, yes(n <= 2048))
	}
	p("\nOther routes against Node: ")
	var parts []string
	for _, s := range r.order {
		i := scenarios[s]
		if rps, _, ok := r.closedRPS(s); i.NodeRPS > 0 && ok {
			parts = append(parts, fmt.Sprintf("%s %s", i.Title, ratio(rps, i.NodeRPS)))
		}
	}
	p("%s.\n\n", strings.Join(parts, ", "))
}

// writeCPU lists, per run, the processes that used the most CPU: on a two-core box
// shared with k6, PostgreSQL, Redis and RabbitMQ this says what limits a figure.
func (r *report) writeCPU(w io.Writer) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	p("\n## Where the CPU went (cores per process name during each run)\n\n")
	p("Sampled from /proc at the start and end of each run; bash is the harness's own sampler, " +
		"postgres the sum of PostgreSQL's backends, beam.smp RabbitMQ.\n")
	r.writeWrkCPU(w)
	if !r.hasK6() {
		return
	}
	p("\nDuring the k6 runs:\n\n")
	p("| scenario | closed loop | %s req/s | baseline closed loop |\n|---|---|---|---|\n", r.meta["rate"])
	// k6 has exited by the second snapshot, so its own sample leads the list.
	cell := func(res *result) string {
		v, ok := res.sample["top_cpu"]
		if !ok {
			return "–"
		}
		k6 := fmt.Sprintf("k6=%.2f", res.f("k6_cpu_cores"))
		if v == "" {
			return k6
		}
		return k6 + ", " + strings.ReplaceAll(v, " ", ", ")
	}
	for _, s := range r.order {
		p("| %s | %s | %s | %s |\n", title(s), cell(r.closed[s]), cell(r.rate[s]), cell(r.base[s]))
	}
}

func (r *report) writeMicro(w io.Writer) {
	if len(r.micro) == 0 && r.microErr == "" {
		return
	}
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	p("\n## Micro-benchmarks (`go test -bench . -benchtime=1s -benchmem`, after the load runs)\n\n")
	p("| package | benchmark | iterations | results |\n|---|---|---|---|\n")
	for _, b := range r.micro {
		var vals []string
		for _, v := range b.Values {
			vals = append(vals, v[0]+" "+v[1])
		}
		p("| %s | %s | %s | %s |\n", b.Pkg, b.Name, b.Iters, strings.Join(vals, ", "))
	}
	if r.microErr != "" {
		p("\nFailures: %s\n", r.microErr)
	}
}

func (r *report) writeProfiles(w io.Writer) {
	if len(r.profiles) == 0 && len(r.allocSpace) == 0 {
		return
	}
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	p("\n## Profiles under load (wrk closed loop; `go tool pprof -top`)\n")
	for _, s := range r.order {
		writeProfile(w, title(s), r.profiles[s], r.cum[s], r.allocSpace[s], r.allocObjs[s])
	}
}

// writeProfile writes one scenario's CPU and allocation profiles; empty listings
// are left out.
func writeProfile(w io.Writer, name, cpu, cum, allocSpace, allocObjs string) {
	if cpu == "" && allocSpace == "" && allocObjs == "" {
		return
	}
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	p("\n### %s\n", name)
	if cpu != "" {
		p("\nCPU, flat (where the samples landed):\n\n```\n%s\n```\n", profileBlock(cpu, 25))
	}
	if lines := componentLines(cum); len(lines) > 0 {
		p("\nCPU, cumulative, the service's own code and its libraries (what each part costs with its callees):\n\n```\n%s\n```\n", strings.Join(lines, "\n"))
	}
	if allocSpace != "" {
		p("\nAllocations during the run, bytes (`-sample_index=alloc_space`):\n\n```\n%s\n```\n", profileBlock(allocSpace, 20))
	}
	if allocObjs != "" {
		p("\nAllocations during the run, objects (`-sample_index=alloc_objects`):\n\n```\n%s\n```\n", profileBlock(allocObjs, 20))
	}
}

// componentLines keeps the lines of a `pprof -top -cum` listing that name the
// service's packages, its libraries and the system calls, so that the cost of each
// part (HTTP, JSON, actors, Redis, PostgreSQL, RabbitMQ) shows at a glance.
func componentLines(cum string) []string {
	var out []string
	for _, line := range strings.Split(cum, "\n") {
		for _, k := range []string{"lms-platform/userservice", "rueidis.(*pipe)._background", "protoactor-go/actor.(*defaultMailbox).run",
			"go-json.Marshal", "pgx/v5.(*Conn).SendBatch", "amqp091", "fasthttp.(*Server).serveConn\n", "syscall.Syscall", "runtime.gcBgMarkWorker", "runtime.mallocgc"} {
			if strings.Contains(line+"\n", k) {
				out = append(out, line)
				break
			}
		}
		if len(out) == 30 {
			break
		}
	}
	return out
}
