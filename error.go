package userservice

import (
	"errors"
	"fmt"
)

// Machine-readable error codes. Each maps to exactly one HTTP status, in http/errors.go.
const (
	ECodeValidation          = "VALIDATION_ERROR"       // 400: a field failed validation
	ECodeInvalidJSON         = "INVALID_JSON"           // 400: body is not the JSON we expect
	ECodeInvalidParam        = "INVALID_PARAMETER"      // 400: bad path or query parameter
	ECodeUnauthorized        = "UNAUTHORIZED"           // 401: token missing, malformed, expired or badly signed
	ECodeForbidden           = "FORBIDDEN"              // 403: authenticated but not allowed
	ECodeAccountInactive     = "ACCOUNT_DISABLED"       // 403: caller is suspended or deleted
	ECodeNotFound            = "NOT_FOUND"              // 404: unknown user, enrollment, preference
	ECodeRouteNotFound       = "ROUTE_NOT_FOUND"        // 404: no such route
	ECodeMethodNotAllowed    = "METHOD_NOT_ALLOWED"     // 405
	ECodeConflict            = "CONFLICT"               // 409: uniqueness or state conflict
	ECodeAlreadyEnrolled     = "ALREADY_ENROLLED"       // 409
	ECodeVersionMismatch     = "PRECONDITION_FAILED"    // 412: If-Match does not match
	ECodePayloadTooLarge     = "PAYLOAD_TOO_LARGE"      // 413
	ECodeUnsupportedMedia    = "UNSUPPORTED_MEDIA_TYPE" // 415
	ECodeIdempotencyKeyReuse = "IDEMPOTENCY_KEY_REUSED" // 422
	ECodeQuotaExceeded       = "QUOTA_EXCEEDED"         // 422: a per-user limit would be passed
	ECodeRateLimited         = "RATE_LIMIT_EXCEEDED"    // 429
	ECodeUnavailable         = "SERVICE_UNAVAILABLE"    // 503: a dependency the request needs is down
	ECodeTimeout             = "TIMEOUT"                // 503: the request ran out of time
	ECodeInternal            = "INTERNAL_ERROR"         // 500
)

// FieldError names one invalid field of a request.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// Error is the domain error: a code for machines, a message for humans, optional
// per-field details, and an optional cause that is logged but never sent.
type Error struct {
	Code    string
	Message string
	Details []FieldError
	Err     error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Err)
	}
	return e.Code + ": " + e.Message
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error with the code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Wrap returns an *Error with the code and message that keeps err as its cause.
func Wrap(code, message string, err error) *Error {
	return &Error{Code: code, Message: message, Err: err}
}

// ValidationError returns a 400 error carrying the field details.
func ValidationError(details []FieldError) *Error {
	return &Error{Code: ECodeValidation, Message: "Validation failed", Details: details}
}

// ErrorCode returns the code of the first *Error in err's chain, ECodeInternal for any
// other non-nil error, and "" for nil.
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ECodeInternal
}

// ErrorMessage returns the human message of the first *Error in err's chain, and a
// generic text for other errors, whose details must not leak to clients.
func ErrorMessage(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "Internal server error"
}

// Sentinel errors returned by stores and actors.
var (
	// ErrUserNotFound is returned when no user has the requested id or authId.
	ErrUserNotFound = &Error{Code: ECodeNotFound, Message: "User not found"}
	// ErrEnrollmentNotFound is returned when the user has no enrollment in the course.
	ErrEnrollmentNotFound = &Error{Code: ECodeNotFound, Message: "Enrollment not found"}
	// ErrPreferenceNotFound is returned when the user has no such preference.
	ErrPreferenceNotFound = &Error{Code: ECodeNotFound, Message: "Preference not found"}
	// ErrVersionMismatch is returned when If-Match names another version than the current one.
	ErrVersionMismatch = &Error{Code: ECodeVersionMismatch, Message: "Resource version does not match If-Match"}
	// ErrStaleVersion is returned by the writer when the stored version moved past the
	// one a mutation was computed from (another process wrote the user). The actor
	// reloads; the request gets a retryable error.
	ErrStaleVersion = &Error{Code: ECodeUnavailable, Message: "Concurrent modification, please retry"}
	// ErrDuplicateMessage is returned by the writer when a consumed message id was
	// already processed: the mutation changed nothing.
	ErrDuplicateMessage = &Error{Code: ECodeConflict, Message: "Message already processed"}
	// ErrIdempotencyKeyTaken is returned by the writer when another request stored the
	// same idempotency key first: the mutation changed nothing.
	ErrIdempotencyKeyTaken = &Error{Code: ECodeConflict, Message: "Idempotency key already used"}
	// ErrUnavailable is returned when a dependency the request needs is down.
	ErrUnavailable = &Error{Code: ECodeUnavailable, Message: "Service temporarily unavailable"}
	// ErrPlacementInFlux is returned in cluster mode when the user's owner could not
	// be reached before the deadline because the user is moving between nodes (or its
	// node is failing over). Nothing was executed; the HTTP layer adds Retry-After.
	ErrPlacementInFlux = &Error{Code: ECodeUnavailable, Message: "User is moving between nodes, please retry"}
	// ErrOwnerLost is returned in cluster mode when the connection to the user's
	// owner node was lost while a write was in flight there: the write may or may
	// not have been applied (a TIMEOUT), and the user is moving to another node, so
	// the HTTP layer adds Retry-After as for ErrPlacementInFlux.
	ErrOwnerLost = &Error{Code: ECodeTimeout, Message: "The user's node was lost before it answered; the write may have been applied"}
)
