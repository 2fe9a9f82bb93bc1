package main

import (
	"encoding/json"
	"net/http"
	"testing"
)

// TestPreferencesMergePatch: PATCH …/preferences/{category} applies an RFC 7396
// merge patch through the user's actor, committed like any write: the version
// moves once, a stale If-Match is refused, a patch that changes nothing keeps the
// version, and after a restart (state read back from PostgreSQL and Redis) the
// category is exactly what the patch answered.
func TestPreferencesMergePatch(t *testing.T) {
	st := newStack(t)
	svc := st.start(t, nil)
	admin := st.adminToken(t)
	u := svc.createUser(t, admin, newUserBody(t))
	tok := st.tokenFor(t, u)
	path := "/api/v1/users/me/preferences/ui"
	version := func(r *response) int64 { t.Helper(); return r.version(t) }

	before := svc.do(t, "GET", "/api/v1/users/me", tok, nil)
	v0 := version(before)
	patch := `{"theme": "dark", "items_per_page": null, "layout": {"sidebar": true, "density": null, "cols": {"left": 1}}}`
	r := svc.do(t, "PATCH", path, tok, patch, "Content-Type", "application/merge-patch+json")
	var got []apiPreference
	r.data(t, http.StatusOK, &got)
	values := func(list []apiPreference) map[string]string {
		out := map[string]string{}
		for _, p := range list {
			var v any // normalized: object members sorted
			if err := json.Unmarshal(p.Value, &v); err != nil {
				t.Fatal(err)
			}
			b, err := json.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			out[p.Key] = string(b)
		}
		return out
	}
	want := map[string]string{"theme": `"dark"`, "language": `"en"`, "timezone": `"UTC"`, "layout": `{"cols":{"left":1},"sidebar":true}`}
	if g := values(got); len(g) != len(want) || g["theme"] != want["theme"] || g["layout"] != want["layout"] || g["language"] != want["language"] {
		t.Fatalf("after the patch %v, want %v", g, want)
	}
	v1 := version(r)
	if v1 != v0+1 {
		t.Fatalf("version %d after the patch, was %d", v1, v0)
	}
	// Nested merge, then a patch that changes nothing.
	r = svc.do(t, "PATCH", path, tok, `{"layout": {"cols": {"left": null, "right": 2}}}`, "Content-Type", "application/merge-patch+json", "If-Match", r.Header.Get("ETag"))
	r.data(t, http.StatusOK, &got)
	if g := values(got)["layout"]; g != `{"cols":{"right":2},"sidebar":true}` {
		t.Fatalf("layout after a nested patch %s", g)
	}
	v2 := version(r)
	r = svc.do(t, "PATCH", path, tok, `{"theme": "dark", "never_set": null}`, "Content-Type", "application/merge-patch+json")
	r.data(t, http.StatusOK, nil)
	if version(r) != v2 {
		t.Fatalf("a patch that changes nothing moved the version %d -> %d", v2, version(r))
	}
	// Refusals change nothing.
	svc.do(t, "PATCH", path, tok, `{"theme": 1}`, "Content-Type", "application/merge-patch+json", "If-Match", `"1"`).fail(t, http.StatusPreconditionFailed, "PRECONDITION_FAILED")
	svc.do(t, "PATCH", path, tok, `{"Theme": 1}`, "Content-Type", "application/merge-patch+json").fail(t, http.StatusBadRequest, "VALIDATION_ERROR")
	svc.do(t, "PATCH", path, tok, `{"theme": 1`, "Content-Type", "application/merge-patch+json").fail(t, http.StatusBadRequest, "INVALID_JSON")
	svc.do(t, "PATCH", path, tok, `{"theme": 1}`, "Content-Type", "text/plain").fail(t, http.StatusUnsupportedMediaType, "UNSUPPORTED_MEDIA_TYPE")
	final := svc.do(t, "GET", path, tok, nil)
	var kept []apiPreference
	final.data(t, http.StatusOK, &kept)
	if version(final) != v2 {
		t.Fatalf("refused patches moved the version to %d", version(final))
	}

	// Read back after a restart: what PostgreSQL (and the snapshot) hold.
	if err := svc.stop(); err != nil {
		t.Fatal(err)
	}
	svc = st.start(t, nil)
	var reloaded []apiPreference
	svc.do(t, "GET", path, tok, nil).data(t, http.StatusOK, &reloaded)
	if a, b := values(kept), values(reloaded); len(a) != len(b) || a["layout"] != b["layout"] || a["theme"] != b["theme"] {
		t.Fatalf("after a restart %v, before %v", b, a)
	}
	if _, ok := values(reloaded)["items_per_page"]; ok {
		t.Fatal("a key the patch deleted came back after the restart")
	}
	if c := st.count(t, `SELECT count(*) FROM preferences WHERE user_id = $1 AND category = 'ui'`, u.ID); c != len(reloaded) {
		t.Fatalf("%d ui rows in PostgreSQL, %d in the answer", c, len(reloaded))
	}
}
