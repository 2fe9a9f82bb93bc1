package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/lms-platform/userservice"
)

// runCLI runs `userservice args…` as the binary would and returns its output.
func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out bytes.Buffer
	err := run(ctx, append([]string{"userservice"}, args...), func(string) string { return "" }, &out)
	return out.String(), err
}

// TestCLIImportAndExport drives the admin CLI against a running service:
// `import` uploads a CSV file, shows its progress and ends with the job's
// counts and failed rows; run again on the same file it follows the same job
// and creates nothing. `export` then writes every user exactly once, as NDJSON
// and as CSV, walking keyset pages.
func TestCLIImportAndExport(t *testing.T) {
	st := newStack(t)
	svc := st.start(t, map[string]string{"JOB_ITEMS_PER_SECOND": "2000"})
	admin := st.adminToken(t)
	gone := svc.createUser(t, admin, newUserBody(t))
	svc.do(t, "DELETE", "/api/v1/users/"+gone.ID, admin, nil).data(t, http.StatusOK, nil)

	const rows = 1200
	dir := t.TempDir()
	file := filepath.Join(dir, "users.csv")
	var sb strings.Builder
	sb.WriteString("authId,email,firstName,lastName,displayName\n")
	tag := randomHex(t, 4)
	authIDs := map[string]bool{}
	for i := 0; i < rows; i++ {
		a := userservice.NewID()
		authIDs[a] = true
		fmt.Fprintf(&sb, "%s,cli%d.%s@example.com,Cee,\"Ell, %d\",\n", a, i, tag, i)
	}
	sb.WriteString(userservice.NewID() + ",not-an-email,Bad,Row,\n")
	if err := os.WriteFile(file, []byte(sb.String()), 0o600); err != nil {
		t.Fatal(err)
	}

	if _, err := runCLI(t, "import", file, "--url", svc.base); err == nil || !strings.Contains(err.Error(), "--token") {
		t.Errorf("import without --token: %v", err)
	}
	out, err := runCLI(t, "import", file, "--token", admin, "--url", svc.base, "--poll", "100ms")
	if err != nil {
		t.Fatalf("import: %v\n%s", err, out)
	}
	done := regexp.MustCompile(`job ([0-9a-f-]{36}) done: 1201 rows, 1200 imported or already there, 1 failed`)
	m := done.FindStringSubmatch(out)
	if m == nil || !strings.Contains(out, "importing") || !strings.Contains(out, "row 1201: 400") || !strings.Contains(out, "email") {
		t.Fatalf("import output lacks the progress, the summary or the failed row:\n%s", out)
	}
	if n := st.count(t, `SELECT count(*) FROM users`); n != rows+1 {
		t.Fatalf("%d users after the import, want %d", n, rows+1)
	}
	again, err := runCLI(t, "import", file, "--token", admin, "--url", svc.base, "--quiet")
	if err != nil {
		t.Fatalf("second import: %v\n%s", err, again)
	}
	if m2 := done.FindStringSubmatch(again); m2 == nil || m2[1] != m[1] {
		t.Errorf("the same file again did not follow job %s:\n%s", m[1], again)
	}
	if n := st.count(t, `SELECT count(*) FROM jobs`); n != 1 {
		t.Errorf("%d jobs, want 1", n)
	}

	// Export, NDJSON to a file: every live user once; the deleted one left out.
	path := filepath.Join(dir, "users.ndjson")
	out, err = runCLI(t, "export", "--token", admin, "--url", svc.base, "--format", "ndjson", "--page-size", "70", "--output", path)
	if err != nil || !strings.Contains(out, fmt.Sprintf("exported %d users", rows)) {
		t.Fatalf("export: %v\n%s", err, out)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	seen := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var u apiUser
		if err := json.Unmarshal(sc.Bytes(), &u); err != nil {
			t.Fatalf("export line %q: %v", sc.Text(), err)
		}
		if seen[u.AuthID] || !authIDs[u.AuthID] {
			t.Errorf("exported authId %s twice or not imported", u.AuthID)
		}
		seen[u.AuthID] = true
	}
	if len(seen) != rows {
		t.Errorf("NDJSON export has %d users, want %d", len(seen), rows)
	}

	// CSV to standard output, deleted users only.
	out, err = runCLI(t, "export", "--token", admin, "--url", svc.base, "--format", "csv", "--status", "deleted")
	if err != nil {
		t.Fatalf("csv export: %v\n%s", err, out)
	}
	recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil {
		t.Fatalf("csv export is not CSV: %v\n%s", err, out)
	}
	if len(recs) != 2 || recs[0][0] != "id" || recs[1][0] != gone.ID || recs[1][13] != "deleted" {
		t.Errorf("csv export of deleted users: %q", recs)
	}
	out, err = runCLI(t, "export", "--token", admin, "--url", svc.base, "--format", "csv", "--page-size", "100")
	if err != nil {
		t.Fatalf("csv export: %v", err)
	}
	recs, err = csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil || len(recs) != rows+1 {
		t.Fatalf("csv export: %d records, %v; want %d and a header", len(recs), err, rows)
	}
	ids := map[string]bool{}
	for _, r := range recs[1:] {
		if ids[r[0]] || !strings.HasPrefix(r[5], "Ell, ") {
			t.Errorf("csv row %q repeated or lost its quoted last name", r)
		}
		ids[r[0]] = true
	}
	if _, err := runCLI(t, "export", "--token", st.token(t, userservice.NewID(), userservice.NewID(), "s@example.com", userservice.RoleStudent), "--url", svc.base); err == nil || !strings.Contains(err.Error(), "403") {
		t.Errorf("export with a student's token: %v", err)
	}
}
