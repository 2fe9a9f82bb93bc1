package userservice

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// TestPreferenceListAgainstAMap applies random puts and removes to a
// PreferenceList and to a map, and checks after each step that the list holds
// exactly the map's entries, in order, and that Get, Has and Category agree.
func TestPreferenceListAgainstAMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	cats := append(slices.Clone(Categories), "zzz_unknown", "aaa_unknown")
	keys := []string{"a", "b", "theme", "z", "font_size", "a_b"}
	var l PreferenceList
	model := map[PrefKey]Preference{}
	for step := range 5000 {
		k := PrefKey{cats[rng.IntN(len(cats))], keys[rng.IntN(len(keys))]}
		if rng.IntN(3) == 0 {
			_, want := model[k]
			if got := l.Remove(k); got != want {
				t.Fatalf("step %d: Remove(%v) = %v, want %v", step, k, got, want)
			}
			delete(model, k)
		} else {
			p := Preference{Category: k.Category, Key: k.Key, Value: []byte{byte('0' + step%10)}}
			l.Put(p)
			model[k] = p
		}
		if len(l) != len(model) {
			t.Fatalf("step %d: %d entries, want %d", step, len(l), len(model))
		}
		if !slices.IsSortedFunc(l, func(a, b Preference) int { return comparePrefKeys(a.Category, a.Key, b.Category, b.Key) }) {
			t.Fatalf("step %d: not in order: %v", step, l)
		}
		for mk, mp := range model {
			if got, ok := l.Get(mk); !ok || string(got.Value) != string(mp.Value) || !l.Has(mk) {
				t.Fatalf("step %d: Get(%v) = %v %v, want %v", step, mk, got, ok, mp)
			}
		}
		for _, c := range cats {
			n := 0
			for mk := range model {
				if mk.Category == c {
					n++
				}
			}
			sub := l.Category(c)
			if len(sub) != n || cap(sub) != len(sub) {
				t.Fatalf("step %d: Category(%s) has %d (cap %d), want %d", step, c, len(sub), cap(sub), n)
			}
			for _, p := range sub {
				if p.Category != c {
					t.Fatalf("step %d: Category(%s) holds %v", step, c, p)
				}
			}
		}
	}
}

func TestSortPreferencesKeepsTheLastOfEachKey(t *testing.T) {
	in := []Preference{
		{Category: CategoryPrivacy, Key: "b", Value: []byte("1")},
		{Category: CategoryNotifications, Key: "z", Value: []byte("2")},
		{Category: CategoryPrivacy, Key: "b", Value: []byte("3")},
		{Category: "custom", Key: "a", Value: []byte("4")},
		{Category: CategoryNotifications, Key: "a", Value: []byte("5")},
	}
	got := SortPreferences(in)
	var order []string
	for _, p := range got {
		order = append(order, p.Category+"/"+p.Key+"="+string(p.Value))
	}
	want := []string{"notifications/a=5", "notifications/z=2", "privacy/b=3", "custom/a=4"}
	if !slices.Equal(order, want) {
		t.Errorf("SortPreferences = %v, want %v", order, want)
	}
}

// TestStateCopyOnWritePreferences: a change's writes never reach the state it
// was applied to (the list is copied before Put or Remove).
func TestStateCopyOnWritePreferences(t *testing.T) {
	s := registered(t)
	before := slices.Clone(s.Preferences)
	apply(t, s, SetPreferences{Category: CategoryUI, Input: UpsertPreferences{Preferences: []PreferenceInput{{Key: "aaa", Value: []byte("1")}, {Key: "theme", Value: []byte(`"x"`)}}}}, at(1))
	apply(t, s, RemovePreference{Category: CategoryUI, Key: "theme"}, at(1))
	apply(t, s, RemoveCategory{Category: CategoryNotifications}, at(1))
	if len(s.Preferences) != len(before) {
		t.Fatalf("the base state has %d preferences, want %d", len(s.Preferences), len(before))
	}
	for i := range before {
		if s.Preferences[i].Key != before[i].Key || string(s.Preferences[i].Value) != string(before[i].Value) {
			t.Fatalf("the base state changed at %d: %+v, was %+v", i, s.Preferences[i], before[i])
		}
	}
}
