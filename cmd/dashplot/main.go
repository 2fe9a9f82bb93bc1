// Command dashplot records a series of /metrics scrapes of a running User
// Service and renders the main panels of deploy/grafana's dashboard from it into
// a PNG with gonum.org/v1/plot (Grafana is not installable on the build machine,
// so the README's picture is drawn this way; docs/operations.md).
//
//	dashplot record -url http://127.0.0.1:3002/metrics -duration 60s -out scrapes.txt
//	dashplot render -in scrapes.txt[.gz] -out docs/dashboard.png
//
// A recording keeps only the samples the panels read, each scrape preceded by
// "# scrape <unix milliseconds>".
package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"flag"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// kept lists the metric families the panels read.
var kept = []string{
	"user_service_requests_total", "user_service_request_duration_seconds_bucket",
	"user_service_actors_active", "user_service_actor_activations_total", "user_service_actor_passivations_total",
	"user_service_write_batch_size_sum", "user_service_write_batch_size_count",
	"user_service_write_commit_duration_seconds_sum", "user_service_write_commit_duration_seconds_count",
	"user_service_outbox_backlog", "user_service_db_pool_acquired_conns", "user_service_db_pool_total_conns",
	"go_goroutines",
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "dashplot:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return errors.New("usage: dashplot record|render [flags]")
	}
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	switch args[0] {
	case "record":
		url := fs.String("url", "http://127.0.0.1:3002/metrics", "the service's /metrics")
		d := fs.Duration("duration", time.Minute, "how long to record")
		every := fs.Duration("interval", time.Second, "time between scrapes")
		out := fs.String("out", "", "the recording to write")
		if err := fs.Parse(args[1:]); err != nil || *out == "" {
			return fmt.Errorf("record: -out is required (%v)", err)
		}
		return record(*url, *d, *every, *out)
	case "render":
		in := fs.String("in", "", "a recording")
		out := fs.String("out", "", "the PNG to write")
		if err := fs.Parse(args[1:]); err != nil || *in == "" || *out == "" {
			return fmt.Errorf("render: -in and -out are required (%v)", err)
		}
		return render(*in, *out)
	}
	return fmt.Errorf("unknown command %q", args[0])
}

func record(url string, d, every time.Duration, out string) error {
	f, err := os.Create(out)
	if err != nil {
		return fmt.Errorf("cannot create the recording: %w", err)
	}
	defer f.Close()
	w := bufio.NewWriter(f)
	client := &http.Client{Timeout: 5 * time.Second}
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(every) {
		resp, err := client.Get(url)
		if err != nil {
			return fmt.Errorf("cannot scrape %s: %w", url, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			return fmt.Errorf("scrape %s: status %d: %v", url, resp.StatusCode, err)
		}
		fmt.Fprintf(w, "# scrape %d\n", time.Now().UnixMilli())
		for _, line := range strings.Split(string(body), "\n") {
			if name, _, _ := strings.Cut(line, "{"); keep(strings.TrimSpace(strings.SplitN(name, " ", 2)[0])) {
				fmt.Fprintln(w, line)
			}
		}
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("cannot write the recording: %w", err)
	}
	return f.Close()
}

func keep(name string) bool {
	for _, k := range kept {
		if name == k {
			return true
		}
	}
	return false
}

// scrape is one recorded scrape: sample values by metric name and label string.
type scrape struct {
	t       float64 // seconds since the first scrape
	samples map[string]map[string]float64
}

// sum adds the samples of name whose labels contain every filter substring.
func (s scrape) sum(name string, filters ...string) float64 {
	var v float64
next:
	for labels, x := range s.samples[name] {
		for _, f := range filters {
			if !strings.Contains(labels, f) {
				continue next
			}
		}
		v += x
	}
	return v
}

func load(path string) ([]scrape, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read the recording: %w", err)
	}
	if strings.HasSuffix(path, ".gz") {
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("cannot read the recording: %w", err)
		}
		if b, err = io.ReadAll(zr); err != nil {
			return nil, fmt.Errorf("cannot read the recording: %w", err)
		}
	}
	var out []scrape
	var t0 float64
	for _, line := range strings.Split(string(b), "\n") {
		if ms, ok := strings.CutPrefix(line, "# scrape "); ok {
			n, err := strconv.ParseFloat(ms, 64)
			if err != nil {
				return nil, fmt.Errorf("bad scrape line %q: %w", line, err)
			}
			if out == nil {
				t0 = n
			}
			out = append(out, scrape{t: (n - t0) / 1000, samples: map[string]map[string]float64{}})
			continue
		}
		if line == "" || strings.HasPrefix(line, "#") || len(out) == 0 {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if i < 0 || err != nil {
			return nil, fmt.Errorf("bad sample %q", line)
		}
		name, labels, _ := strings.Cut(line[:i], "{")
		s := out[len(out)-1]
		if s.samples[name] == nil {
			s.samples[name] = map[string]float64{}
		}
		s.samples[name][labels] = v
	}
	if len(out) < 3 {
		return nil, fmt.Errorf("%d scrapes in %s, want at least 3", len(out), path)
	}
	return out, nil
}

// series computes one value per pair of consecutive scrapes.
func series(sc []scrape, f func(prev, cur scrape, dt float64) float64) plotter.XYs {
	var xy plotter.XYs
	for i := 1; i < len(sc); i++ {
		if v := f(sc[i-1], sc[i], sc[i].t-sc[i-1].t); !math.IsNaN(v) && !math.IsInf(v, 0) {
			xy = append(xy, plotter.XY{X: sc[i].t, Y: v})
		}
	}
	return xy
}

func rate(name string, filters ...string) func(p, c scrape, dt float64) float64 {
	return func(p, c scrape, dt float64) float64 { return (c.sum(name, filters...) - p.sum(name, filters...)) / dt }
}

func gauge(name string) func(p, c scrape, dt float64) float64 {
	return func(_, c scrape, _ float64) float64 { return c.sum(name) }
}

func ratio(num, den string) func(p, c scrape, dt float64) float64 {
	return func(p, c scrape, _ float64) float64 {
		d := c.sum(den) - p.sum(den)
		if d == 0 {
			return math.NaN()
		}
		return (c.sum(num) - p.sum(num)) / d
	}
}

// quantile is histogram_quantile over the increase of every route's buckets.
func quantile(q float64) func(p, c scrape, dt float64) float64 {
	return func(p, c scrape, _ float64) float64 {
		byLE := map[float64]float64{}
		for labels, v := range c.samples["user_service_request_duration_seconds_bucket"] {
			i := strings.Index(labels, `le="`)
			if i < 0 {
				continue
			}
			s := labels[i+4:]
			s = s[:strings.IndexByte(s, '"')]
			le := math.Inf(1)
			if s != "+Inf" {
				le, _ = strconv.ParseFloat(s, 64)
			}
			byLE[le] += v - p.samples["user_service_request_duration_seconds_bucket"][labels]
		}
		les := make([]float64, 0, len(byLE))
		for le := range byLE {
			les = append(les, le)
		}
		sort.Float64s(les)
		if len(les) < 2 || byLE[les[len(les)-1]] <= 0 {
			return math.NaN()
		}
		rank := q * byLE[les[len(les)-1]]
		prevLE, prevN := 0.0, 0.0
		for _, le := range les {
			if n := byLE[le]; n >= rank {
				if math.IsInf(le, 1) {
					return prevLE * 1000
				}
				return (prevLE + (le-prevLE)*(rank-prevN)/math.Max(n-prevN, 1e-9)) * 1000
			}
			prevLE, prevN = le, byLE[le]
		}
		return math.NaN()
	}
}

type line struct {
	name string
	xy   plotter.XYs
}

func panel(title, unit string, lines ...line) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "seconds"
	p.Y.Label.Text = unit
	p.Y.Min = 0
	p.Legend.Top = true
	var args []any
	for _, l := range lines {
		if len(l.xy) == 0 {
			return nil, fmt.Errorf("panel %q: no data for %s", title, l.name)
		}
		args = append(args, l.name, l.xy)
	}
	if err := plotutil.AddLines(p, args...); err != nil {
		return nil, fmt.Errorf("panel %q: %w", title, err)
	}
	return p, nil
}

func render(in, out string) error {
	sc, err := load(in)
	if err != nil {
		return err
	}
	type spec struct {
		title, unit string
		lines       []line
	}
	specs := []spec{
		{"Request rate", "requests/s", []line{{"all", series(sc, rate("user_service_requests_total"))}}},
		{"Error ratio (5xx)", "ratio", []line{{"5xx / all", series(sc, func(p, c scrape, _ float64) float64 {
			d := c.sum("user_service_requests_total") - p.sum("user_service_requests_total")
			if d == 0 {
				return math.NaN()
			}
			return (c.sum("user_service_requests_total", `status="5`) - p.sum("user_service_requests_total", `status="5`)) / d
		})}}},
		{"Latency, all routes", "ms", []line{{"p50", series(sc, quantile(0.5))}, {"p95", series(sc, quantile(0.95))}, {"p99", series(sc, quantile(0.99))}}},
		{"Actors", "actors, per s", []line{{"active", series(sc, gauge("user_service_actors_active"))},
			{"activations/s", series(sc, rate("user_service_actor_activations_total"))}}},
		{"Writer", "commands, ms", []line{{"mean batch size", series(sc, ratio("user_service_write_batch_size_sum", "user_service_write_batch_size_count"))},
			{"mean commit ms", series(sc, func(p, c scrape, dt float64) float64 {
				return 1000 * ratio("user_service_write_commit_duration_seconds_sum", "user_service_write_commit_duration_seconds_count")(p, c, dt)
			})}}},
		{"PostgreSQL pool, outbox, Go", "count", []line{{"pool acquired", series(sc, gauge("user_service_db_pool_acquired_conns"))},
			{"outbox backlog", series(sc, gauge("user_service_outbox_backlog"))},
			{"goroutines / 100", series(sc, func(p, c scrape, dt float64) float64 { return c.sum("go_goroutines") / 100 })}}},
	}
	const cols, rows = 3, 2
	plots := make([][]*plot.Plot, rows)
	for i, s := range specs {
		p, err := panel(s.title, s.unit, s.lines...)
		if err != nil {
			return err
		}
		plots[i/cols] = append(plots[i/cols], p)
	}
	img := vgimg.New(vg.Points(1500), vg.Points(800))
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: rows, Cols: cols, PadX: vg.Points(12), PadY: vg.Points(12),
		PadTop: vg.Points(8), PadBottom: vg.Points(8), PadLeft: vg.Points(8), PadRight: vg.Points(8)}
	canvases := plot.Align(plots, tiles, dc)
	for r := range plots {
		for c := range plots[r] {
			plots[r][c].Draw(canvases[r][c])
		}
	}
	f, err := os.Create(out)
	if err != nil {
		return fmt.Errorf("cannot create %s: %w", out, err)
	}
	defer f.Close()
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		return fmt.Errorf("cannot write %s: %w", out, err)
	}
	return f.Close()
}
