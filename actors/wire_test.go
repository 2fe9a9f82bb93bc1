package actors

import (
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
