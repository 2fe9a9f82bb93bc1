package postgres

import (
	"errors"

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
// anything else.
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
	return unavailable("cannot commit the change", err)
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
