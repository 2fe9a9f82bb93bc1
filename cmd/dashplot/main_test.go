package main

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"testing"
)

// TestQuantile: histogram_quantile over the increase between two scrapes, with
// linear interpolation inside a bucket, in milliseconds.
func TestQuantile(t *testing.T) {
	b := "user_service_request_duration_seconds_bucket"
	prev := scrape{samples: map[string]map[string]float64{b: {`le="0.01"}`: 0, `le="0.1"}`: 0, `le="+Inf"}`: 0}}}
	cur := scrape{samples: map[string]map[string]float64{b: {`le="0.01"}`: 50, `le="0.1"}`: 100, `le="+Inf"}`: 100}}}
	for q, want := range map[float64]float64{0.5: 10, 0.75: 55, 0.25: 5} {
		if got := quantile(q)(prev, cur, 1); math.Abs(got-want) > 1e-9 {
			t.Errorf("quantile(%v) = %v ms, want %v", q, got, want)
		}
	}
	if got := quantile(0.5)(cur, cur, 1); !math.IsNaN(got) {
		t.Errorf("no requests between the scrapes: %v, want NaN", got)
	}
}

// TestRenderRecording draws the committed recording (docs/dashboard) into a PNG.
func TestRenderRecording(t *testing.T) {
	out := filepath.Join(t.TempDir(), "d.png")
	if err := run([]string{"render", "-in", "../../docs/dashboard/scrapes.txt.gz", "-out", out}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil || !bytes.HasPrefix(b, []byte("\x89PNG")) || len(b) < 10000 {
		t.Fatalf("not a PNG with content: %d bytes, %v", len(b), err)
	}
	short := filepath.Join(t.TempDir(), "s.txt")
	if err := os.WriteFile(short, []byte("# scrape 1\ngo_goroutines 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := run([]string{"render", "-in", short, "-out", out}); err == nil {
		t.Error("a recording of one scrape rendered")
	}
}
