package metricshelp

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestEveryMetricInTheSourceHasHelp reads every non-test Go file of the module
// for user_service_* names and fails when one has no HELP text, so a new metric
// cannot ship without one (a name built at run time from a prefix ending in "_"
// is skipped).
func TestEveryMetricInTheSourceHasHelp(t *testing.T) {
	nameRE := regexp.MustCompile(`user_service_[a-z0-9_]+`)
	seen := map[string]bool{}
	err := filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") && path != ".." || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		if strings.HasPrefix(filepath.ToSlash(path), "../bench/") || strings.HasPrefix(filepath.ToSlash(path), "../metricshelp/") {
			return nil // the bench tools read metrics, they define none
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range nameRE.FindAll(src, -1) {
			name := string(m)
			if strings.HasSuffix(name, "_") {
				continue
			}
			if _, ok := help[name]; !ok {
				// A histogram's series (name_bucket, name_sum, name_count) are
				// read by the dashboard tools under the histogram's own name.
				for _, suffix := range []string{"_bucket", "_sum", "_count"} {
					if base := strings.TrimSuffix(name, suffix); base != name {
						if _, ok := help[base]; ok {
							name = base
						}
					}
				}
			}
			seen[name] = true
			if _, ok := help[name]; !ok {
				t.Errorf("%s: metric %s has no HELP text in metricshelp/help.go", path, name)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) < 50 {
		t.Fatalf("found only %d metric names in the source: is the walk broken?", len(seen))
	}
	for f := range help {
		if !seen[f] {
			t.Errorf("HELP text for %s, which no source file names (renamed or removed?)", f)
		}
	}
}

func TestHelpTextsAreOneLine(t *testing.T) {
	for f, h := range help {
		if h == "" || strings.ContainsAny(h, "\\\n\r") {
			t.Errorf("%s: HELP %q must be one non-empty line without a backslash", f, h)
		}
		if !strings.HasPrefix(f, "user_service_") {
			t.Errorf("%s: not a user_service_ metric", f)
		}
	}
}

func TestAddHelp(t *testing.T) {
	in := "# HELP user_service_requests_total\n# TYPE user_service_requests_total counter\n" +
		"user_service_requests_total{route=\"/x\"} 1\n" +
		"# HELP go_goroutines\n# TYPE go_goroutines gauge\ngo_goroutines 7\n" +
		"# HELP user_service_users Already has one.\nuser_service_users 3\n" +
		"user_service_no_newline 1"
	var out bytes.Buffer
	AddHelp(&out, []byte(in))
	want := "# HELP user_service_requests_total " + help["user_service_requests_total"] + "\n" +
		"# TYPE user_service_requests_total counter\n" +
		"user_service_requests_total{route=\"/x\"} 1\n" +
		"# HELP go_goroutines\n# TYPE go_goroutines gauge\ngo_goroutines 7\n" +
		"# HELP user_service_users Already has one.\nuser_service_users 3\n" +
		"user_service_no_newline 1"
	if out.String() != want {
		t.Errorf("AddHelp:\n%s\nwant:\n%s", out.String(), want)
	}
}
