package http

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"

	"github.com/lms-platform/userservice"
)

// idemState is an Idempotency-Key in play: from the moment the lookup found no
// earlier answer, the first answer of this request is stored for replay.
type idemState struct {
	callerID, key, hash string
}

var errIdempotencyKey = invalidParam("Idempotency-Key", "must be 1-255 printable ASCII characters")

// idempotencyKey returns the Idempotency-Key header, "" when absent.
func (r *request) idempotencyKey() (string, error) {
	v := r.fc.Request.Header.Peek("Idempotency-Key")
	if len(v) == 0 {
		return "", nil
	}
	if len(v) > 255 {
		return "", errIdempotencyKey
	}
	for _, c := range v {
		if c < 0x20 || c > 0x7e {
			return "", errIdempotencyKey
		}
	}
	return string(v), nil
}

// requestHash identifies a request for key reuse: hex SHA-256 of method, path
// and body.
func requestHash(method, path, body []byte) string {
	h := sha256.New()
	h.Write(method)
	h.Write([]byte{'\n'})
	h.Write(path)
	h.Write([]byte{'\n'})
	h.Write(body)
	return hex.EncodeToString(h.Sum(nil))
}

// beginIdempotent looks the key up for the resolved caller. When an answer is
// stored it is replayed (same request) or refused with 422 (another request), and
// done is true. Otherwise the request proceeds with the key in play.
func (r *request) beginIdempotent(key string) (done bool, err error) {
	st := &idemState{
		callerID: r.caller.scope(), key: key,
		hash: requestHash(r.fc.Method(), r.fc.URI().PathOriginal(), r.fc.Request.Body()),
	}
	rec, err := r.s.deps.Idempotency.GetIdempotency(r.ctx, st.callerID, key, r.s.cfg.IdempotencyTTL)
	if err != nil {
		return true, err
	}
	if rec != nil {
		return true, r.replay(rec, st.hash)
	}
	r.idem = st
	return false, nil
}

// replay sends a stored answer byte for byte, or 422 when the key was used for
// another request.
func (r *request) replay(rec *userservice.IdempotencyRecord, hash string) error {
	if rec.RequestHash != hash {
		return errKeyReused
	}
	r.fc.Response.Header.Set("Idempotent-Replayed", "true")
	r.writeJSON(rec.Status, rec.Body)
	return nil
}

// idempotencyRequest asks the actor to store the answer render gives with the
// change, when a key is in play.
func (r *request) idempotencyRequest(render func(*userservice.Outcome) (int, []byte)) *userservice.IdempotencyRequest {
	if r.idem == nil {
		return nil
	}
	return &userservice.IdempotencyRequest{CallerID: r.idem.callerID, Key: r.idem.key, RequestHash: r.idem.hash, Render: render}
}

// afterKeyTaken handles a concurrent duplicate: another request stored the key
// first, so its answer is replayed (or 422).
func (r *request) afterKeyTaken() error {
	st := r.idem
	r.idem = nil // this request's own answer is not stored
	rec, err := r.s.deps.Idempotency.GetIdempotency(r.ctx, st.callerID, st.key, r.s.cfg.IdempotencyTTL)
	if err != nil {
		return err
	}
	if rec == nil { // expired in between: as good as a conflict
		return userservice.ErrIdempotencyKeyTaken
	}
	return r.replay(rec, st.hash)
}

// storeAnswer stores an answer that changed nothing (4xx, or a command without a
// mutation) for replay. When a concurrent duplicate stored its answer first, that
// answer replaces this one: the first answer is the one every retry sees. A
// failure to store is logged, not answered: the answer itself is right.
func (r *request) storeAnswer(status int, body []byte) {
	st := r.idem
	r.idem = nil
	rec := &userservice.IdempotencyRecord{
		CallerID: st.callerID, Key: st.key, RequestHash: st.hash,
		Status: status, Body: append([]byte(nil), body...), CreatedAt: userservice.Now(),
	}
	err := r.s.deps.Idempotency.PutIdempotency(r.ctx, rec)
	if errors.Is(err, userservice.ErrIdempotencyKeyTaken) {
		first, gerr := r.s.deps.Idempotency.GetIdempotency(r.ctx, st.callerID, st.key, r.s.cfg.IdempotencyTTL)
		if gerr == nil && first != nil {
			if rerr := r.replay(first, st.hash); rerr != nil {
				r.writeJSON(statusByCode[errKeyReused.Code], renderError(errKeyReused.Code, errKeyReused.Message, nil, nil))
			}
			return
		}
		err = gerr
	}
	if err != nil {
		r.s.logger.LogAttrs(r.s.base, slog.LevelWarn, "cannot store idempotent answer",
			slog.String("requestId", r.requestID), slog.String("error", r.s.mask.text(err.Error())))
	}
}

// respondWrite answers a committed write: with the answer the actor stored for
// the Idempotency-Key, else with render's, which is stored when a key is in play
// (the command changed nothing).
func (r *request) respondWrite(out *userservice.Outcome, err error, render func(*userservice.Outcome) (int, []byte)) error {
	if err != nil {
		if r.idem != nil && errors.Is(err, userservice.ErrIdempotencyKeyTaken) {
			return r.afterKeyTaken()
		}
		return err
	}
	r.etag(out.State.User.Version)
	if m := out.Mutation; m != nil && m.Idempotency != nil {
		r.writeJSON(m.Idempotency.Status, m.Idempotency.Body)
		r.idem = nil
		return nil
	}
	status, body := render(out)
	r.writeJSON(status, body)
	if r.idem != nil && status < 500 {
		r.storeAnswer(status, body)
	}
	return nil
}

// renderResult renders the outcome's result in the success envelope.
func renderResult(status int, message string) func(*userservice.Outcome) (int, []byte) {
	return func(o *userservice.Outcome) (int, []byte) {
		b, err := renderSuccess(o.Result, message, nil)
		if err != nil {
			return 500, renderError(userservice.ECodeInternal, "Internal server error", nil, nil)
		}
		return status, b
	}
}
