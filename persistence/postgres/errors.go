package postgres

import (
	"errors"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/lms-platform/userservice"
)

// Constraint names of the schema (migrations/00001_initial_schema.sql) that map to
// domain errors.
const (
	constraintUserPkey         = "users_pkey"
	constraintUserEmail        = "users_email_key"
	constraintUserUsername     = "users_username_key"
	constraintUserAuthID       = "users_auth_id_key"
	constraintProcessedPkey    = "processed_messages_pkey"
	constraintIdempotencyPkey  = "idempotency_keys_pkey"
	constraintEnrollmentUnique = "enrollments_user_course_key"
)

const pgUniqueViolation = "23505"

// unavailable wraps a driver error that says nothing about the request itself.
func unavailable(what string, err error) error {
	return userservice.Wrap(userservice.ECodeUnavailable, "Service temporarily unavailable", errors.Join(errors.New(what), err))
}

// mapError turns the error of one mutation's statements into the domain error the
// actor acts on: a 4xx-coded *Error (or ErrStaleVersion) when nothing was written
// because of the mutation itself, an ECodeUnavailable *Error with the cause for
// anything else. PostgreSQL's data errors (SQLSTATE class 22) and constraint
// violations (class 23) are the mutation's own: 400 naming the field where it is
// known, or 409, never 503, so that the actor keeps its state instead of
// reloading (their transaction was rolled back: PostgreSQL answered).
func mapError(err error) error {
	if err == nil {
		return nil
	}
	var de *userservice.Error
	if errors.As(err, &de) {
		return err
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == pgUniqueViolation {
		switch pe.ConstraintName {
		case constraintUserEmail:
			return userservice.Errorf(userservice.ECodeConflict, "Email address is already registered")
		case constraintUserUsername:
			return userservice.Errorf(userservice.ECodeConflict, "Username is already taken")
		case constraintUserAuthID:
			return userservice.Errorf(userservice.ECodeConflict, "User already exists with this auth ID")
		case constraintUserPkey:
			return userservice.Errorf(userservice.ECodeConflict, "User already exists")
		case constraintProcessedPkey:
			return userservice.ErrDuplicateMessage
		case constraintIdempotencyPkey:
			return userservice.ErrIdempotencyKeyTaken
		case constraintEnrollmentUnique:
			return userservice.Errorf(userservice.ECodeAlreadyEnrolled, "User is already enrolled in this course")
		}
	}
	if errors.As(err, &pe) && len(pe.Code) == 5 {
		switch pe.Code[:2] {
		case "22": // data exception: a value PostgreSQL cannot store
			return fieldError(err, pe, "cannot be stored: "+pe.Message)
		case "23": // integrity constraint violation
			switch pe.Code {
			case "23502", "23514": // not null, check: the value is wrong
				return fieldError(err, pe, "is not allowed: "+pe.Message)
			}
			return userservice.Wrap(userservice.ECodeConflict, "The change conflicts with stored data", err)
		}
	}
	return unavailable("cannot commit the change", err)
}

// fieldError is a 400 naming the field err is about, with err as its cause.
func fieldError(err error, pe *pgconn.PgError, message string) error {
	e := userservice.ValidationError([]userservice.FieldError{{Field: errorField(err, pe), Message: message}})
	e.Err = err
	return e
}

// statementError is a statement's error from PostgreSQL, with the request field
// that the statement writes when one can be named (see txItem.queue).
type statementError struct {
	field string
	err   error
}

func (e *statementError) Error() string {
	if e.field == "" {
		return e.err.Error()
	}
	return e.field + ": " + e.err.Error()
}

func (e *statementError) Unwrap() error { return e.err }

// errorField names the field a data error is about: the one its statement was
// known to write, else PostgreSQL's column in the contract's spelling
// (first_name → firstName), else the body.
func errorField(err error, pe *pgconn.PgError) string {
	var se *statementError
	if errors.As(err, &se) && se.field != "" {
		return se.field
	}
	if pe.ColumnName == "" {
		return "body"
	}
	parts := strings.Split(pe.ColumnName, "_")
	for i := 1; i < len(parts); i++ {
		if parts[i] != "" {
			parts[i] = strings.ToUpper(parts[i][:1]) + parts[i][1:]
		}
	}
	return strings.Join(parts, "")
}

// unstorableText returns the name of the first of texts (name, value pairs; a
// nil value is skipped) that PostgreSQL's text type refuses: not UTF-8, or
// holding NUL. "" when there is none.
func unstorableText(texts ...any) string {
	for i := 0; i+1 < len(texts); i += 2 {
		var v string
		switch x := texts[i+1].(type) {
		case string:
			v = x
		case *string:
			if x == nil {
				continue
			}
			v = *x
		default:
			continue
		}
		if !utf8.ValidString(v) || strings.IndexByte(v, 0) >= 0 {
			return texts[i].(string)
		}
	}
	return ""
}

// attributable reports whether err, raised by one mutation's statement, is caused by
// that mutation's data (a constraint, a fence, bad input), so that the rest of its
// batch may be retried without it. Connection failures, deadlocks and
// serialization failures are not.
func attributable(err error) bool {
	var de *userservice.Error
	if errors.As(err, &de) {
		return true
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) && len(pe.Code) == 5 {
		class := pe.Code[:2]
		return class == "22" || class == "23" // data exception, integrity constraint violation
	}
	return false
}

// serverError reports whether PostgreSQL itself answered err, so that the
// connection worked and the transaction is known to be rolled back.
func serverError(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe)
}
