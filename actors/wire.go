package actors

import (
	"bytes"
	"encoding/gob"
	"errors"
	"fmt"
	"time"

	userservice "github.com/lms-platform/userservice"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// The cluster's messages cross nodes as gob inside a protobuf BytesValue (protoactor
// remoting needs protobuf messages; the domain types are plain Go). Every message
// is one wireMsg with the fields of its kind set.

type wireKind uint8

const (
	wireGet      wireKind = iota + 1 // caller → grain
	wireExecute                      // caller → grain
	wireReply                        // grain → caller: Reply
	wireMoved                        // grain → caller: not executed, ask the owner again
	wireRelease                      // node → node's fence endpoint: give up UserID
	wireReleased                     // fence endpoint → node: released (nothing of it runs any more)
)

type wireMsg struct {
	Kind     wireKind
	UserID   string
	Deadline int64 // unix nanos; the caller stops waiting then
	Touch    *userservice.Time
	Cmd      userservice.Command
	Meta     userservice.Meta
	// IdemStatus and IdemBody are the precomputed idempotent answer of an execute.
	IdemStatus int
	IdemBody   []byte
	// Reply
	State   *userservice.State
	Outcome *wireOutcome
	Err     *wireError
}

type wireOutcome struct {
	State       *userservice.State
	Result      any
	Created     bool
	Changed     bool
	Idempotency *userservice.IdempotencyRecord
}

type wireError struct {
	Code    string
	Message string
	Details []userservice.FieldError
}

func init() {
	for _, c := range userservice.AllCommands() {
		gob.Register(c)
	}
	gob.Register(userservice.User{})
	gob.Register(userservice.Enrollment{})
	gob.Register([]userservice.Preference{})
	gob.Register(userservice.Session{})
	gob.Register(userservice.SessionsRevoked{})
	gob.Register(userservice.Erasure{})
	gob.Register(userservice.Status(""))
	gob.Register(userservice.UserAttributes{}) // SetAttributes's result
	gob.Register(map[string]any{})
}

func encodeWire(m *wireMsg) (*wrapperspb.BytesValue, error) {
	var b bytes.Buffer
	if err := gob.NewEncoder(&b).Encode(m); err != nil {
		return nil, fmt.Errorf("cannot encode cluster message: %w", err)
	}
	return &wrapperspb.BytesValue{Value: b.Bytes()}, nil
}

func decodeWire(v *wrapperspb.BytesValue) (*wireMsg, error) {
	var m wireMsg
	if err := gob.NewDecoder(bytes.NewReader(v.Value)).Decode(&m); err != nil {
		return nil, fmt.Errorf("cannot decode cluster message: %w", err)
	}
	return &m, nil
}

func (m *wireMsg) deadline() time.Time { return time.Unix(0, m.Deadline) }

// sentinels are the errors upper layers compare with errors.Is; a reply carrying one
// of them becomes the same pointer again.
var sentinels = []*userservice.Error{
	userservice.ErrUserNotFound, userservice.ErrEnrollmentNotFound, userservice.ErrPreferenceNotFound,
	userservice.ErrVersionMismatch, userservice.ErrStaleVersion, userservice.ErrDuplicateMessage,
	userservice.ErrIdempotencyKeyTaken, userservice.ErrJobItemDone, userservice.ErrUnavailable, userservice.ErrPlacementInFlux,
	userservice.ErrAttributesNotFound, ErrShuttingDown,
}

func toWireError(err error) *wireError {
	e := &userservice.Error{Code: userservice.ECodeInternal, Message: "Internal server error"}
	for _, s := range sentinels {
		if errors.Is(err, s) {
			e = s
			break
		}
	}
	if e.Code == userservice.ECodeInternal {
		var as *userservice.Error
		if errors.As(err, &as) {
			e = as
		}
	}
	return &wireError{Code: e.Code, Message: e.Message, Details: e.Details}
}

func (w *wireError) toError() error {
	if len(w.Details) == 0 {
		for _, s := range sentinels {
			if s.Code == w.Code && s.Message == w.Message {
				return s
			}
		}
	}
	return &userservice.Error{Code: w.Code, Message: w.Message, Details: w.Details}
}

func toWireOutcome(o *userservice.Outcome) *wireOutcome {
	w := &wireOutcome{State: o.State, Result: o.Result, Created: o.Created, Changed: o.Mutation != nil}
	if o.Mutation != nil {
		w.Idempotency = o.Mutation.Idempotency
	}
	return w
}

func (w *wireOutcome) outcome() *userservice.Outcome {
	o := &userservice.Outcome{State: w.State, Result: w.Result, Created: w.Created}
	if w.Changed {
		o.Mutation = &userservice.Mutation{UserID: w.State.User.ID, Idempotency: w.Idempotency}
	}
	return o
}
