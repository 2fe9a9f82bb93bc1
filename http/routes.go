package http

import (
	"github.com/fasthttp/router"
	"github.com/valyala/fasthttp"
)

// routes registers the whole API surface (CONTRACT.md, HTTP). Static segments
// win over parameters in fasthttp/router, so /bulk/role is not taken for
// /{id}/role.
func (s *Server) routes(r *router.Router) {
	const (
		GET    = fasthttp.MethodGet
		POST   = fasthttp.MethodPost
		PUT    = fasthttp.MethodPut
		DELETE = fasthttp.MethodDelete
		PATCH  = fasthttp.MethodPatch
	)
	s.public(r, GET, "/health", s.health)
	s.public(r, GET, "/health/live", s.healthLive)
	s.public(r, GET, "/health/ready", s.healthReady)
	s.public(r, GET, "/health/detailed", s.healthDetailed)
	if !s.cfg.NoMetrics {
		s.public(r, GET, "/metrics", s.metrics)
	}
	s.docsRoutes(r) // /docs, /docs/openapi.json and the Swagger UI assets (docs.go)

	const users = "/api/v1/users"
	s.api(r, GET, users, s.searchUsers)
	s.api(r, POST, users, s.createUser)
	s.api(r, PUT, users+"/bulk/role", s.bulkChangeRole)
	s.api(r, GET, users+"/stats", s.platformStats) // static: wins over /{id}

	s.api(r, GET, users+"/{id}", s.getUser)
	s.api(r, PUT, users+"/{id}", s.updateUser)
	s.api(r, DELETE, users+"/{id}", s.deleteUser)
	s.api(r, GET, users+"/{id}/stats", s.userStats)
	s.api(r, PUT, users+"/{id}/role", s.changeRole)
	s.api(r, PUT, users+"/{id}/status", s.changeStatus)
	s.api(r, GET, users+"/{id}/audit", s.auditLog)
	s.api(r, GET, users+"/{id}/sessions", s.listSessions)
	s.api(r, DELETE, users+"/{id}/sessions", s.revokeSessions)
	s.api(r, DELETE, users+"/{id}/sessions/{sessionId}", s.revokeSession)
	s.api(r, POST, users+"/{id}/erasure", s.requestErasure) // erasure.go
	s.api(r, GET, users+"/{id}/erasure", s.erasureState)
	s.api(r, DELETE, users+"/{id}/erasure", s.cancelErasure)
	s.api(r, GET, users+"/{id}/export", s.exportUser) // data export (export.go)
	s.api(r, GET, users+"/{id}/events", s.userEvents) // change feed (events.go)
	s.api(r, GET, "/api/v1/events", s.allEvents)

	s.api(r, GET, users+"/{id}/enrollments", s.listEnrollments)
	s.api(r, POST, users+"/{id}/enrollments", s.enroll)
	s.api(r, GET, users+"/{id}/enrollments/stats", s.enrollmentStats)
	s.api(r, PUT, users+"/{id}/enrollments/{courseId}", s.updateEnrollment)
	s.api(r, DELETE, users+"/{id}/enrollments/{courseId}", s.unenroll)
	s.api(r, PUT, users+"/{id}/enrollments/{courseId}/progress", s.updateProgress)

	s.api(r, GET, users+"/{id}/preferences", s.listPreferences)
	s.api(r, PUT, users+"/{id}/preferences", s.setPreferences)
	s.api(r, GET, users+"/{id}/preferences/{category}", s.categoryPreferences)
	s.api(r, PUT, users+"/{id}/preferences/{category}", s.setCategoryPreferences)
	s.api(r, PATCH, users+"/{id}/preferences/{category}", s.patchCategoryPreferences)
	s.api(r, DELETE, users+"/{id}/preferences/{category}", s.deleteCategory)
	s.api(r, DELETE, users+"/{id}/preferences/{category}/{key}", s.deletePreference)

	s.api(r, GET, users+"/{id}/attributes", s.listUserAttributes)
	s.api(r, GET, users+"/{id}/attributes/{namespace}", s.getUserAttributes)
	s.api(r, PUT, users+"/{id}/attributes/{namespace}", s.putUserAttributes)
	s.api(r, DELETE, users+"/{id}/attributes/{namespace}", s.deleteUserAttributes)

	const attributes = "/api/v1/attributes"
	s.api(r, GET, attributes, s.listAttributeSchemas)
	s.api(r, GET, attributes+"/{namespace}", s.getAttributeSchema)
	s.api(r, PUT, attributes+"/{namespace}", s.putAttributeSchema)
	// Bulk jobs (issue 15, jobs.go): POST streams its upload (limitBody).
	s.api(r, POST, jobsPath, s.createJob)
	s.api(r, GET, jobsPath+"/{jobId}", s.getJob)
	s.api(r, DELETE, jobsPath+"/{jobId}", s.cancelJob)
	s.api(r, GET, jobsPath+"/{jobId}/results", s.jobResults)

	const courses = "/api/v1/courses"
	s.api(r, GET, courses+"/{courseId}/enrollments", s.courseRoster)
	s.api(r, GET, courses+"/{courseId}/stats", s.courseStats)
}
