package actors

import (
	"encoding/json"
	"reflect"
	"testing"

	userservice "github.com/lms-platform/userservice"
)

// TestWireCarriesEveryCommand: every command crosses nodes with its type intact
// (a command gob does not know fails to encode, and the request would fail only in
// cluster mode, only on a non-owner node).
func TestWireCarriesEveryCommand(t *testing.T) {
	for _, c := range []userservice.Command{userservice.Register{}, userservice.VerifyEmail{}} {
		v, err := encodeWire(&wireMsg{Kind: wireExecute, UserID: "u", Cmd: c})
		if err != nil {
			t.Fatalf("%T: %v", c, err)
		}
		m, err := decodeWire(v)
		if err != nil {
			t.Fatalf("%T: %v", c, err)
		}
		if reflect.TypeOf(m.Cmd) != reflect.TypeOf(c) {
			t.Fatalf("%T came back as %T", c, m.Cmd)
		}
	}
}

// TestWireCarriesAttributeResults: the results of the attribute commands and a
// State holding attributes cross nodes intact.
func TestWireCarriesAttributeResults(t *testing.T) {
	st := &userservice.State{Attributes: map[string]json.RawMessage{"hr": json.RawMessage(`{"grade":10}`)}}
	for _, result := range []any{userservice.AttributesOf("hr", json.RawMessage(`{"grade":10}`)), map[string]any{"deleted": true}} {
		v, err := encodeWire(&wireMsg{Kind: wireReply, UserID: "u", Outcome: &wireOutcome{State: st, Result: result}})
		if err != nil {
			t.Fatalf("%T: %v", result, err)
		}
		m, err := decodeWire(v)
		if err != nil {
			t.Fatalf("%T: %v", result, err)
		}
		o := m.Outcome
		if !reflect.DeepEqual(o.Result, result) || string(o.State.Attributes["hr"]) != `{"grade":10}` {
			t.Fatalf("came back as %#v, %v", o.Result, o.State.Attributes)
		}
	}
}
