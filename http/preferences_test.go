package http

import (
	"strings"
	"testing"

	"github.com/lms-platform/userservice"
)

func TestPreferences(t *testing.T) {
	h := newHarness(t)
	base := userPath("me", "preferences")
	t.Run("list and object format", func(t *testing.T) {
		if n := len(h.get(base, h.alice.token).expect(200, "").dataList()); n != 16 {
			t.Fatalf("%d preferences, want 16", n)
		}
		obj := h.get(base+"?format=object", h.alice.token).expect(200, "").dataMap()
		ui := obj["ui"].(map[string]any)
		if ui["theme"] != "light" || ui["items_per_page"] != float64(20) {
			t.Fatalf("object %v", obj)
		}
		h.get(base+"?format=xml", h.alice.token).expect(400, userservice.ECodeInvalidParam)
	})
	t.Run("one category", func(t *testing.T) {
		l := h.get(base+"/notifications", h.alice.token).expect(200, "").dataList()
		if len(l) != 5 {
			t.Fatalf("%d notification preferences", len(l))
		}
	})
	t.Run("value null is a value, a missing value is 400", func(t *testing.T) {
		r := h.send("PUT", base+"/ui", h.alice.token, `{"preferences":[{"key":"theme","value":null}]}`).expect(200, "")
		if r.json()["message"] != "Preferences updated successfully" {
			t.Fatalf("body %s", r.body)
		}
		obj := h.get(base+"?format=object", h.alice.token).dataMap()
		if v, ok := obj["ui"].(map[string]any)["theme"]; !ok || v != nil {
			t.Fatalf("theme = %v (present %v), want null", v, ok)
		}
		h.send("PUT", base+"/ui", h.alice.token, `{"preferences":[{"key":"theme"}]}`).expect(400, userservice.ECodeValidation)
	})
	t.Run("4 KiB limit on the compact value", func(t *testing.T) {
		ok := `"` + strings.Repeat("a", 4094) + `"`
		h.send("PUT", base+"/ui", h.alice.token, `{"preferences":[{"key":"big","value":`+ok+`}]}`).expect(200, "")
		tooBig := `"` + strings.Repeat("a", 4095) + `"`
		h.send("PUT", base+"/ui", h.alice.token, `{"preferences":[{"key":"big","value":`+tooBig+`}]}`).expect(400, userservice.ECodeValidation)
		spaced := `[` + strings.Repeat(`1,       `, 500) + `1]` // 4.5 KiB as sent, 1 KiB compact
		h.send("PUT", base+"/ui", h.alice.token, `{"preferences":[{"key":"spaced","value":`+spaced+`}]}`).expect(200, "")
	})
	t.Run("a batch is all or nothing", func(t *testing.T) {
		v := h.users.state(h.alice.id).User.Version
		h.send("PUT", base, h.alice.token, `{"preferences":[{"category":"ui","key":"theme","value":"dark"},{"category":"ui","key":"BAD KEY","value":1}]}`).
			expect(400, userservice.ECodeValidation)
		if h.users.state(h.alice.id).User.Version != v {
			t.Fatal("a refused batch changed preferences")
		}
		h.send("PUT", base, h.alice.token, `{"preferences":[{"key":"theme","value":"dark"}]}`).expect(400, userservice.ECodeValidation)
		r := h.send("PUT", base, h.alice.token, `{"preferences":[{"category":"ui","key":"theme","value":"dark"},{"category":"privacy","key":"show_progress","value":false}]}`).expect(200, "")
		if len(r.dataList()) != 2 {
			t.Fatalf("body %s", r.body)
		}
		h.send("PUT", base+"/ui", h.alice.token, `{"preferences":[{"category":"privacy","key":"x","value":1}]}`).expect(400, userservice.ECodeValidation)
	})
	t.Run("delete one key, then a category; empty category lists []", func(t *testing.T) {
		r := h.send("DELETE", base+"/learning/playback_speed", h.alice.token, nil).expect(200, "")
		if r.json()["message"] != "Preference deleted successfully" {
			t.Fatalf("body %s", r.body)
		}
		h.send("DELETE", base+"/learning/playback_speed", h.alice.token, nil).expect(404, userservice.ECodeNotFound)
		h.send("DELETE", base+"/learning/Bad-Key", h.alice.token, nil).expect(400, userservice.ECodeInvalidParam)
		h.send("DELETE", base+"/learning", h.alice.token, nil).expect(200, "")
		r = h.get(base+"/learning", h.alice.token).expect(200, "")
		if l := r.dataList(); len(l) != 0 {
			t.Fatalf("learning after delete: %s", r.body)
		}
		h.send("DELETE", base+"/learning", h.alice.token, nil).expect(404, userservice.ECodeNotFound)
		h.send("DELETE", base+"/colors", h.alice.token, nil).expect(400, userservice.ECodeInvalidParam)
	})
}
