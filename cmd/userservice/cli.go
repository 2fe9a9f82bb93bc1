package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
)

// The admin CLI (issue 15): `userservice import FILE --token T [--url U]` uploads
// an import job and follows it with a progress bar; `userservice export --token T
// [--format ndjson|csv] [--url U] [--output FILE]` writes every user, walking the
// admin search with keyset cursors. Both talk to a running service through its
// API only, so they need an admin's token and nothing else.

const defaultCLIURL = "http://localhost:3002"

// cliCommand runs a CLI subcommand when args name one; ok is false otherwise.
func cliCommand(ctx context.Context, args []string, stdout io.Writer) (ok bool, err error) {
	if len(args) < 2 {
		return false, nil
	}
	switch args[1] {
	case "import":
		return true, runImport(ctx, args[2:], stdout)
	case "export":
		return true, runExport(ctx, args[2:], stdout)
	}
	return false, nil
}

// parseFlags parses flags that may come before or after the positional
// arguments (`import users.csv --token T`), which the flag package alone does
// not allow.
func parseFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// apiClient calls the service as an admin.
type apiClient struct {
	base  string
	token string
	hc    *http.Client
}

func newAPIClient(base, token string) (*apiClient, error) {
	if token == "" {
		return nil, errors.New("--token is required: an admin's bearer token")
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("--url %q is not an http(s) URL", base)
	}
	return &apiClient{base: strings.TrimRight(base, "/"), token: token, hc: &http.Client{}}, nil
}

// do sends a request and returns the answer's body; a status other than want
// is an error carrying the service's message.
func (c *apiClient) do(ctx context.Context, method, path string, body io.Reader, hdr map[string]string, want int) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if resp.StatusCode != want {
		var e struct {
			Error   string `json:"error"`
			Details []struct{ Field, Message string }
		}
		msg := strings.TrimSpace(string(b))
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			msg = e.Error
			for _, d := range e.Details {
				msg += "; " + d.Field + " " + d.Message
			}
		}
		return nil, fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, msg)
	}
	return b, nil
}

// cliJob is the part of a job the CLI shows.
type cliJob struct {
	ID     string `json:"id"`
	State  string `json:"state"`
	Counts struct {
		Total     int `json:"total"`
		Processed int `json:"processed"`
		Succeeded int `json:"succeeded"`
		Failed    int `json:"failed"`
	} `json:"counts"`
	Error *string `json:"error"`
}

func decodeData(b []byte, v any) error {
	var env struct {
		Data json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(b, &env); err != nil {
		return fmt.Errorf("cannot decode the answer: %w", err)
	}
	return json.Unmarshal(env.Data, v)
}

// runImport uploads FILE as an import job and follows it to the end.
func runImport(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("import", flag.ContinueOnError)
	fs.SetOutput(stdout)
	token := fs.String("token", "", "an admin's bearer token (required)")
	base := fs.String("url", defaultCLIURL, "the service's base URL")
	format := fs.String("format", "", "csv or ndjson (default: from the file's extension)")
	key := fs.String("key", "", "Idempotency-Key (default: derived from the file's content, so a rerun follows the same job)")
	poll := fs.Duration("poll", 500*time.Millisecond, "how often the job is polled")
	quiet := fs.Bool("quiet", false, "no progress bar")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: userservice import FILE --token TOKEN [--url URL] [--format csv|ndjson] [--key KEY]")
		fs.PrintDefaults()
	}
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		fs.Usage()
		return errors.New("import takes exactly one file")
	}
	c, err := newAPIClient(*base, *token)
	if err != nil {
		return err
	}
	path := pos[0]
	if *format == "" {
		switch strings.ToLower(filepath.Ext(path)) {
		case ".csv":
			*format = "csv"
		case ".ndjson", ".jsonl":
			*format = "ndjson"
		default:
			return fmt.Errorf("cannot tell the format of %s: name it .csv or .ndjson, or give --format", path)
		}
	}
	contentType := map[string]string{"csv": "text/csv", "ndjson": "application/x-ndjson"}[*format]
	if contentType == "" {
		return fmt.Errorf("--format %q: want csv or ndjson", *format)
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("cannot open the import: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("cannot open the import: %w", err)
	}
	if *key == "" { // the file's hash: rerunning the same file resumes following the same job
		h := sha256.New()
		if _, err := io.Copy(h, f); err != nil {
			return fmt.Errorf("cannot read the import: %w", err)
		}
		*key = "import-" + hex.EncodeToString(h.Sum(nil))[:40]
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return fmt.Errorf("cannot read the import: %w", err)
		}
	}
	visible := !*quiet
	upload := progressbar.NewOptions64(st.Size(), progressbar.OptionSetWriter(stdout), progressbar.OptionSetVisibility(visible),
		progressbar.OptionSetDescription("uploading"), progressbar.OptionShowBytes(true), progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100*time.Millisecond))
	rd := progressbar.NewReader(f, upload)
	b, err := c.do(ctx, "POST", "/api/v1/jobs", &rd, map[string]string{"Content-Type": contentType, "Idempotency-Key": *key}, http.StatusAccepted)
	if err != nil {
		return err
	}
	_ = upload.Finish()
	var job cliJob
	if err := decodeData(b, &job); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\njob %s: %d rows\n", job.ID, job.Counts.Total)

	bar := progressbar.NewOptions(job.Counts.Total, progressbar.OptionSetWriter(stdout), progressbar.OptionSetVisibility(visible),
		progressbar.OptionSetDescription("importing"), progressbar.OptionShowCount(), progressbar.OptionSetWidth(30),
		progressbar.OptionSetPredictTime(true), progressbar.OptionThrottle(100*time.Millisecond))
	for {
		_ = bar.Set(job.Counts.Processed)
		if job.State == "done" || job.State == "failed" || job.State == "cancelled" {
			break
		}
		select {
		case <-ctx.Done():
			fmt.Fprintf(stdout, "\nstopped following job %s (it goes on): run the same command again to follow it\n", job.ID)
			return ctx.Err()
		case <-time.After(*poll):
		}
		b, err := c.do(ctx, "GET", "/api/v1/jobs/"+job.ID, nil, nil, http.StatusOK)
		if err != nil {
			return err
		}
		if err := decodeData(b, &job); err != nil {
			return err
		}
	}
	_ = bar.Finish()
	fmt.Fprintf(stdout, "\njob %s %s: %d rows, %d imported or already there, %d failed\n",
		job.ID, job.State, job.Counts.Total, job.Counts.Succeeded, job.Counts.Failed)
	if job.Counts.Failed > 0 {
		if err := printFailures(ctx, c, job.ID, stdout, 20); err != nil {
			return err
		}
	}
	switch job.State {
	case "failed":
		msg := ""
		if job.Error != nil {
			msg = *job.Error
		}
		return fmt.Errorf("job %s failed: %s", job.ID, msg)
	case "cancelled":
		return fmt.Errorf("job %s was cancelled", job.ID)
	}
	return nil
}

// printFailures prints up to limit failed rows of the job.
func printFailures(ctx context.Context, c *apiClient, id string, w io.Writer, limit int) error {
	b, err := c.do(ctx, "GET", "/api/v1/jobs/"+id+"/results", nil, nil, http.StatusOK)
	if err != nil {
		return err
	}
	shown := 0
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() && shown < limit {
		var r struct {
			Item   int64   `json:"item"`
			Status int     `json:"status"`
			Error  *string `json:"error"`
		}
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return fmt.Errorf("cannot decode a result: %w", err)
		}
		if r.Status >= 400 && r.Error != nil {
			fmt.Fprintf(w, "  row %d: %d %s\n", r.Item, r.Status, *r.Error)
			shown++
		}
	}
	fmt.Fprintf(w, "all results: GET %s/api/v1/jobs/%s/results\n", c.base, id)
	return nil
}

// exportColumns are the CSV columns of an export: the User fields.
var exportColumns = []string{"id", "authId", "email", "username", "firstName", "lastName", "displayName", "avatarUrl", "bio",
	"phone", "timezone", "language", "role", "status", "emailVerified", "profileCompleted", "lastActiveAt", "loginCount",
	"lastLoginAt", "createdAt", "updatedAt", "version"}

// runExport writes every user (of a status, with --status) as NDJSON or CSV.
func runExport(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("export", flag.ContinueOnError)
	fs.SetOutput(stdout)
	token := fs.String("token", "", "an admin's bearer token (required)")
	base := fs.String("url", defaultCLIURL, "the service's base URL")
	format := fs.String("format", "ndjson", "ndjson or csv")
	status := fs.String("status", "", "only users of this status (deleted users are left out unless asked for)")
	output := fs.String("output", "", "write to this file instead of standard output")
	pageSize := fs.Int("page-size", 100, "users per request (1-100)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: userservice export --token TOKEN [--url URL] [--format ndjson|csv] [--status S] [--output FILE]")
		fs.PrintDefaults()
	}
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		fs.Usage()
		return errors.New("export takes no arguments")
	}
	if *format != "ndjson" && *format != "csv" {
		return fmt.Errorf("--format %q: want ndjson or csv", *format)
	}
	if *pageSize < 1 || *pageSize > 100 {
		return fmt.Errorf("--page-size %d: want 1-100", *pageSize)
	}
	c, err := newAPIClient(*base, *token)
	if err != nil {
		return err
	}
	out := stdout
	if *output != "" {
		f, err := os.Create(*output)
		if err != nil {
			return fmt.Errorf("cannot create the export: %w", err)
		}
		defer f.Close()
		out = f
	}
	bw := bufio.NewWriter(out)
	var cw *csv.Writer
	if *format == "csv" {
		cw = csv.NewWriter(bw)
		if err := cw.Write(exportColumns); err != nil {
			return err
		}
	}
	// Keyset pages in creation order, without the exact count: every page is a
	// range scan however deep, and a user created meanwhile never shifts a page.
	q := url.Values{"limit": {strconv.Itoa(*pageSize)}, "count": {"none"}, "sortBy": {"createdAt"}, "sortOrder": {"asc"}}
	if *status != "" {
		q.Set("status", *status)
	}
	n := 0
	for {
		b, err := c.do(ctx, "GET", "/api/v1/users?"+q.Encode(), nil, nil, http.StatusOK)
		if err != nil {
			return err
		}
		var page struct {
			Data       []json.RawMessage `json:"data"`
			Pagination struct {
				NextCursor *string `json:"nextCursor"`
			} `json:"pagination"`
		}
		if err := json.Unmarshal(b, &page); err != nil {
			return fmt.Errorf("cannot decode a page of users: %w", err)
		}
		for _, raw := range page.Data {
			if cw != nil {
				if err := writeCSVUser(cw, raw); err != nil {
					return err
				}
			} else {
				bw.Write(raw)
				bw.WriteByte('\n')
			}
			n++
		}
		if page.Pagination.NextCursor == nil {
			break
		}
		// A cursor carries the filters and the sort; only limit and count may go with it.
		q = url.Values{"cursor": {*page.Pagination.NextCursor}, "limit": {strconv.Itoa(*pageSize)}, "count": {"none"}}
	}
	if cw != nil {
		cw.Flush()
		if err := cw.Error(); err != nil {
			return fmt.Errorf("cannot write the export: %w", err)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("cannot write the export: %w", err)
	}
	if *output != "" {
		fmt.Fprintf(stdout, "exported %d users to %s\n", n, *output)
	}
	return nil
}

// writeCSVUser writes one user as a CSV row of exportColumns: strings as they
// are, null as an empty cell, other values as JSON.
func writeCSVUser(cw *csv.Writer, raw json.RawMessage) error {
	var u map[string]json.RawMessage
	if err := json.Unmarshal(raw, &u); err != nil {
		return fmt.Errorf("cannot decode a user: %w", err)
	}
	row := make([]string, len(exportColumns))
	for i, col := range exportColumns {
		v := u[col]
		switch {
		case len(v) == 0 || string(v) == "null":
		case v[0] == '"':
			var s string
			if err := json.Unmarshal(v, &s); err != nil {
				return fmt.Errorf("cannot decode %s of a user: %w", col, err)
			}
			row[i] = s
		default:
			row[i] = string(v)
		}
	}
	return cw.Write(row)
}
