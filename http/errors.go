package http

import (
	"context"
	"errors"

	"github.com/valyala/fasthttp"

	"github.com/lms-platform/userservice"
)

// Codes the HTTP edge adds to the domain's, for failures only a connection has.
const (
	codeBadRequest     = "BAD_REQUEST"
	codeRequestTimeout = "REQUEST_TIMEOUT"
	codeHeaderTooLarge = "REQUEST_HEADER_TOO_LARGE"
)

// statusByCode is the one place where an error code becomes an HTTP status
// (CONTRACT.md, HTTP). A code missing here answers 500.
var statusByCode = map[string]int{
	userservice.ECodeValidation:          fasthttp.StatusBadRequest,
	userservice.ECodeInvalidJSON:         fasthttp.StatusBadRequest,
	userservice.ECodeInvalidParam:        fasthttp.StatusBadRequest,
	codeBadRequest:                       fasthttp.StatusBadRequest,
	userservice.ECodeUnauthorized:        fasthttp.StatusUnauthorized,
	userservice.ECodeForbidden:           fasthttp.StatusForbidden,
	userservice.ECodeAccountInactive:     fasthttp.StatusForbidden,
	userservice.ECodeNotFound:            fasthttp.StatusNotFound,
	userservice.ECodeRouteNotFound:       fasthttp.StatusNotFound,
	userservice.ECodeMethodNotAllowed:    fasthttp.StatusMethodNotAllowed,
	codeRequestTimeout:                   fasthttp.StatusRequestTimeout,
	userservice.ECodeConflict:            fasthttp.StatusConflict,
	userservice.ECodeAlreadyEnrolled:     fasthttp.StatusConflict,
	userservice.ECodeVersionMismatch:     fasthttp.StatusPreconditionFailed,
	userservice.ECodePayloadTooLarge:     fasthttp.StatusRequestEntityTooLarge,
	userservice.ECodeUnsupportedMedia:    fasthttp.StatusUnsupportedMediaType,
	userservice.ECodeIdempotencyKeyReuse: fasthttp.StatusUnprocessableEntity,
	userservice.ECodeQuotaExceeded:       fasthttp.StatusUnprocessableEntity,
	userservice.ECodeRateLimited:         fasthttp.StatusTooManyRequests,
	codeHeaderTooLarge:                   fasthttp.StatusRequestHeaderFieldsTooLarge,
	userservice.ECodeUnavailable:         fasthttp.StatusServiceUnavailable,
	userservice.ECodeTimeout:             fasthttp.StatusServiceUnavailable,
	userservice.ECodeInternal:            fasthttp.StatusInternalServerError,
}

// errTimeout is what a request that ran out of time answers.
var errTimeout = &userservice.Error{Code: userservice.ECodeTimeout, Message: "Request timed out"}

// wireError turns any error into the *userservice.Error to send and its status.
// A deadline becomes 503 TIMEOUT; anything that is not an *Error with a known
// code is internal (500) and keeps its cause for the log only.
func wireError(err error) (*userservice.Error, int) {
	var e *userservice.Error
	if errors.As(err, &e) {
		if status, ok := statusByCode[e.Code]; ok {
			return e, status
		}
		return &userservice.Error{Code: userservice.ECodeInternal, Message: "Internal server error", Err: err}, fasthttp.StatusInternalServerError
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return &userservice.Error{Code: errTimeout.Code, Message: errTimeout.Message, Err: err}, fasthttp.StatusServiceUnavailable
	}
	return &userservice.Error{Code: userservice.ECodeInternal, Message: "Internal server error", Err: err}, fasthttp.StatusInternalServerError
}

// StatusOf is the HTTP status a request failing with err answers, for those
// that report results of work done outside a request (bulk job items).
func StatusOf(err error) int {
	_, status := wireError(err)
	return status
}

// Errors the edge itself raises.
var (
	errForbiddenOwner = &userservice.Error{Code: userservice.ECodeForbidden, Message: "Access denied. You can only access your own resources"}
	errForbiddenAdmin = &userservice.Error{Code: userservice.ECodeForbidden, Message: "Access denied. Required roles: admin"}
	errRouteNotFound  = &userservice.Error{Code: userservice.ECodeRouteNotFound, Message: "Route not found"}
	errMethod         = &userservice.Error{Code: userservice.ECodeMethodNotAllowed, Message: "Method not allowed"}
	errTooLarge       = &userservice.Error{Code: userservice.ECodePayloadTooLarge, Message: "Request body is too large"}
	errMediaType      = &userservice.Error{Code: userservice.ECodeUnsupportedMedia, Message: "Content-Type must be application/json"}
	errBodyRequired   = &userservice.Error{Code: userservice.ECodeInvalidJSON, Message: "Request body is required"}
	errKeyReused      = &userservice.Error{Code: userservice.ECodeIdempotencyKeyReuse, Message: "Idempotency-Key was already used with a different request"}
)

// invalidParam is a 400 for one bad path, query or header parameter.
func invalidParam(field, message string) *userservice.Error {
	return &userservice.Error{
		Code: userservice.ECodeInvalidParam, Message: "Invalid parameter: " + field,
		Details: []userservice.FieldError{{Field: field, Message: message}},
	}
}
