package http

import (
	"bytes"
	"context"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/valyala/fasthttp"
)

// loadOpenAPI parses the embedded document and validates it as OpenAPI 3.0.
func loadOpenAPI(tb testing.TB) *openapi3.T {
	tb.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(openAPIDocument)
	if err != nil {
		tb.Fatalf("cannot parse http/openapi.json: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		tb.Fatalf("http/openapi.json is not a valid OpenAPI document: %v", err)
	}
	return doc
}

// documentedRoutes returns "METHOD /path" of every operation in the document.
func documentedRoutes(doc *openapi3.T) []string {
	var out []string
	for p, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			out = append(out, method+" "+p)
		}
	}
	sort.Strings(out)
	return out
}

// servedRoutes returns "METHOD /path" of every route the router serves but
// /docs*. fasthttp/router and OpenAPI both write parameters as {name}, so the
// templates compare as they are.
func servedRoutes(s *Server) []string {
	var out []string
	for _, r := range s.routeList() {
		if r.path == "/docs" || strings.HasPrefix(r.path, "/docs/") {
			continue
		}
		out = append(out, r.method+" "+r.path)
	}
	sort.Strings(out)
	return out
}

func TestDocsDocumentIsValidOpenAPI303(t *testing.T) {
	doc := loadOpenAPI(t)
	if doc.OpenAPI != "3.0.3" {
		t.Errorf("openapi = %q, want 3.0.3", doc.OpenAPI)
	}
	if doc.Info == nil || doc.Info.Title == "" {
		t.Error("info.title is missing")
	}
	ref := doc.Components.SecuritySchemes["bearerAuth"]
	if ref == nil || ref.Value == nil {
		t.Fatal("components.securitySchemes.bearerAuth is missing")
	}
	if s := ref.Value; s.Type != "http" || s.Scheme != "bearer" || s.BearerFormat != "JWT" {
		t.Errorf("bearerAuth = %s %s %s, want http bearer JWT", s.Type, s.Scheme, s.BearerFormat)
	}
}

func TestDocsRoutesEqualTheRouter(t *testing.T) {
	doc := loadOpenAPI(t)
	h := newHarness(t)
	served, documented := servedRoutes(h.srv), documentedRoutes(doc)
	if !slices.Contains(served, "GET /api/v1/users/{id}/audit") || !slices.Contains(served, "GET /metrics") {
		t.Fatalf("the router's list looks wrong: %v", served)
	}
	for _, r := range served {
		if !slices.Contains(documented, r) {
			t.Errorf("route %s is served but not documented in http/openapi.json", r)
		}
	}
	for _, r := range documented {
		if !slices.Contains(served, r) {
			t.Errorf("operation %s is documented but the router does not serve it", r)
		}
	}
}

// TestDocsOperationsDocumentTheirErrors checks the document against the rules
// that hold for every route (CONTRACT.md, HTTP), so an operation added later
// cannot forget its error answers, security or id headers.
func TestDocsOperationsDocumentTheirErrors(t *testing.T) {
	doc := loadOpenAPI(t)
	for p, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			name := method + " " + p
			statuses := map[string]bool{}
			for code := range op.Responses.Map() {
				statuses[code] = true
			}
			want := func(code, why string) {
				if !statuses[code] {
					t.Errorf("%s: no %s answer documented (%s)", name, code, why)
				}
			}
			security := doc.Security
			if op.Security != nil {
				security = *op.Security
			}
			params := map[string]bool{}
			for _, pr := range append(append(openapi3.Parameters{}, item.Parameters...), op.Parameters...) {
				params[pr.Value.In+":"+pr.Value.Name] = true
			}
			if !strings.HasPrefix(p, "/api/v1/") {
				if len(security) != 0 {
					t.Errorf("%s: a public route must have empty security", name)
				}
				continue
			}
			if len(security) != 1 || security[0]["bearerAuth"] == nil {
				t.Errorf("%s: security = %v, want bearerAuth", name, security)
			}
			for _, code := range []string{"400", "401", "403", "429", "503"} {
				want(code, "every /api/v1 route")
			}
			if strings.Contains(p, "{id}") {
				want("404", "user-scoped route")
			}
			if op.RequestBody != nil {
				want("413", "takes a body")
				want("415", "takes a body")
				if rb := op.RequestBody.Value; !rb.Required || rb.Content.Get("application/json") == nil {
					t.Errorf("%s: the request body must be required application/json", name)
				}
			}
			if method == fasthttp.MethodPost {
				want("422", "POST takes Idempotency-Key")
				if !params["header:Idempotency-Key"] {
					t.Errorf("%s: Idempotency-Key is not documented", name)
				}
			}
			if params["header:If-Match"] {
				want("412", "takes If-Match")
			}
			if (method == fasthttp.MethodPut || method == fasthttp.MethodDelete) && strings.Contains(p, "{id}") && !params["header:If-Match"] {
				t.Errorf("%s: If-Match is not documented", name)
			}
			for code, resp := range op.Responses.Map() {
				if resp.Value.Headers["X-Request-ID"] == nil || resp.Value.Headers["X-Correlation-ID"] == nil {
					t.Errorf("%s %s: X-Request-ID / X-Correlation-ID headers are not documented", name, code)
				}
			}
		}
	}
}

func TestDocsServedWithoutTokenOrRateLimit(t *testing.T) {
	refuseAll := func(_ *Config, d *Deps) { d.RateLimiter = &fakeLimiter{limit: 0, seen: map[string]int{}} }
	h := newHarness(t, refuseAll)

	t.Run("the document is the embedded JSON", func(t *testing.T) {
		r := h.get("/docs/openapi.json", "").expect(fasthttp.StatusOK, "")
		if ct := r.get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			t.Errorf("Content-Type = %q", ct)
		}
		if !bytes.Equal(r.body, openAPIDocument) {
			t.Error("the served document differs from http/openapi.json")
		}
	})
	t.Run("the page loads Swagger UI from /docs and points it at the document", func(t *testing.T) {
		r := h.get("/docs", "").expect(fasthttp.StatusOK, "")
		if ct := r.get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
			t.Errorf("Content-Type = %q", ct)
		}
		for _, s := range []string{`src="/docs/swagger-ui-bundle.js"`, `href="/docs/swagger-ui.css"`, `src="/docs/docs-init.js"`} {
			if !strings.Contains(string(r.body), s) {
				t.Errorf("page lacks %s", s)
			}
		}
		if strings.Contains(string(r.body), "<script>") || strings.Contains(string(r.body), "://") {
			t.Errorf("page must load nothing inline or from elsewhere:\n%s", r.body)
		}
		init := h.get("/docs/docs-init.js", "").expect(fasthttp.StatusOK, "")
		if !strings.Contains(string(init.body), `url: "/docs/openapi.json"`) || !strings.Contains(string(init.body), "validatorUrl: null") {
			t.Errorf("init script does not load /docs/openapi.json offline:\n%s", init.body)
		}
	})
	for _, tc := range []struct {
		path, contentType string
		minBytes          int
	}{
		{"/docs/swagger-ui-bundle.js", "application/javascript", 100 << 10},
		{"/docs/swagger-ui.css", "text/css", 10 << 10},
		{"/docs/favicon-32x32.png", "image/png", 100},
	} {
		t.Run("asset "+tc.path+" comes from the binary", func(t *testing.T) {
			r := h.get(tc.path, "").expect(fasthttp.StatusOK, "")
			if ct := r.get("Content-Type"); !strings.HasPrefix(ct, tc.contentType) {
				t.Errorf("Content-Type = %q, want %s", ct, tc.contentType)
			}
			if len(r.body) < tc.minBytes {
				t.Errorf("body is %d bytes, want at least %d", len(r.body), tc.minBytes)
			}
		})
	}
	for _, p := range []string{"/docs/index.html", "/docs/swagger-initializer.js", "/docs/nope.js", "/docs/..%2fdocs.go", "/docs/openapi.yaml"} {
		t.Run("unknown or demo file "+p+" is a 404 envelope", func(t *testing.T) {
			h.get(p, "").expect(fasthttp.StatusNotFound, "ROUTE_NOT_FOUND")
		})
	}
	t.Run("an API route is still rate limited", func(t *testing.T) {
		h.get("/api/v1/users/me", h.alice.token).expect(fasthttp.StatusTooManyRequests, "RATE_LIMIT_EXCEEDED")
	})
}
