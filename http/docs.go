package http

import (
	_ "embed"
	"errors"
	"io/fs"
	"path"
	"sort"
	"strings"

	"github.com/fasthttp/router"
	swaggerfiles "github.com/swaggo/files/v2"
	"github.com/valyala/fasthttp"
)

// openAPIDocument is the OpenAPI 3.0 description of every route but /docs*
// (CONTRACT.md, HTTP). docs_test.go keeps it equal to the router's routes and
// openapi_validate_test.go checks real answers against it. It is read-only.
//
//go:embed openapi.json
var openAPIDocument []byte

// docsPage is the Swagger UI page of /docs. Every script is a file of its own:
// the Content-Security-Policy of the security headers refuses inline scripts.
const docsPage = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>User Service API</title>
<link rel="stylesheet" href="/docs/swagger-ui.css">
<link rel="icon" type="image/png" href="/docs/favicon-32x32.png" sizes="32x32">
<link rel="icon" type="image/png" href="/docs/favicon-16x16.png" sizes="16x16">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/docs/swagger-ui-bundle.js"></script>
<script src="/docs/docs-init.js"></script>
</body>
</html>
`

// docsInit starts Swagger UI on the service's own document. validatorUrl null
// keeps the page from calling the public validator: the docs work offline.
const docsInit = `window.onload = function () {
  window.ui = SwaggerUIBundle({
    url: "/docs/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout"
  });
};
`

const javascript = "application/javascript; charset=utf-8"

// docsAssetType returns the content type of a Swagger UI file served under
// /docs, by extension. The bundle's own index.html and swagger-initializer.js
// point at the petstore demo, so they are not served: docsPage and docsInit
// replace them.
func docsAssetType(name string) (string, bool) {
	switch path.Ext(name) {
	case ".js":
		return javascript, name != "swagger-initializer.js"
	case ".css":
		return "text/css; charset=utf-8", true
	case ".png":
		return "image/png", true
	case ".map":
		return "application/json", true
	}
	return "", false
}

// docsRoutes registers /docs (Swagger UI), /docs/openapi.json and the UI's
// assets, all built into the binary: no CDN, no token, no rate limit.
func (s *Server) docsRoutes(r *router.Router) {
	s.public(r, fasthttp.MethodGet, "/docs", s.docsUI)
	s.public(r, fasthttp.MethodGet, "/docs/openapi.json", s.openAPI)
	s.public(r, fasthttp.MethodGet, "/docs/docs-init.js", s.docsInitScript)
	s.public(r, fasthttp.MethodGet, "/docs/{asset}", s.docsAsset)
}

// docsUI answers GET /docs.
func (s *Server) docsUI(r *request) error {
	r.writeStatic("text/html; charset=utf-8", "no-cache", []byte(docsPage))
	return nil
}

// openAPI answers GET /docs/openapi.json.
func (s *Server) openAPI(r *request) error {
	r.writeStatic("application/json; charset=utf-8", "no-cache", openAPIDocument)
	return nil
}

// docsInitScript answers GET /docs/docs-init.js.
func (s *Server) docsInitScript(r *request) error {
	r.writeStatic(javascript, "no-cache", []byte(docsInit))
	return nil
}

// docsAsset answers GET /docs/{asset}: one file of swagger-ui-dist.
func (s *Server) docsAsset(r *request) error {
	name := r.param("asset")
	ctype, ok := docsAssetType(name)
	if !ok || strings.ContainsAny(name, `/\`) {
		return errRouteNotFound
	}
	b, err := fs.ReadFile(swaggerfiles.FS, name)
	if errors.Is(err, fs.ErrNotExist) {
		return errRouteNotFound
	}
	if err != nil {
		return err
	}
	// The files change only with the binary; a day keeps reloads cheap.
	r.writeStatic(ctype, "public, max-age=86400", b)
	return nil
}

// writeStatic sends a fixed document.
func (r *request) writeStatic(contentType, cacheControl string, body []byte) {
	r.fc.Response.SetStatusCode(fasthttp.StatusOK)
	r.fc.Response.Header.SetContentType(contentType)
	r.fc.Response.Header.Set("Cache-Control", cacheControl)
	r.fc.Response.SetBody(body)
}

// route is one registered (method, path template) pair.
type route struct{ method, path string }

// routeList returns every route the router serves, sorted by path then method
// (docs_test.go compares it with the OpenAPI document).
func (s *Server) routeList() []route {
	var out []route
	for method, paths := range s.router.List() {
		for _, p := range paths {
			out = append(out, route{method, p})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].path != out[j].path {
			return out[i].path < out[j].path
		}
		return out[i].method < out[j].method
	})
	return out
}
