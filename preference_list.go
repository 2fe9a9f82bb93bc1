package userservice

import (
	"cmp"
	"encoding/json"
	"slices"
	"strings"
)

// PreferenceList is a user's preferences, sorted by category (in [Categories]
// order, unknown categories after them by name) then key, each key once.
//
// A sorted slice rather than a map (issue 16): with the map a typical user's
// state took 6,850 bytes of heap, with the slice 5,386 (TestActiveUserFootprint;
// a map slot holds the 32-byte key beside the 136-byte value, and the map keeps
// spare slots); every read wants them in this order anyway (GET preferences no
// longer sorts); lookups are binary searches over at most
// QUOTA_PREFERENCES_PER_USER entries.
// Like the rest of a published [State] it is immutable: a writer copies it
// first (State.writablePreferences) and only then calls Put or Remove.
type PreferenceList []Preference

// categoryRank is a category's place in [Categories].
func categoryRank(c string) int {
	switch c {
	case CategoryNotifications:
		return 0
	case CategoryUI:
		return 1
	case CategoryLearning:
		return 2
	case CategoryPrivacy:
		return 3
	}
	return len(Categories)
}

// comparePrefKeys orders two (category, key) pairs as a PreferenceList does.
func comparePrefKeys(c1, k1, c2, k2 string) int {
	if c := cmp.Compare(categoryRank(c1), categoryRank(c2)); c != 0 {
		return c
	}
	if c := strings.Compare(c1, c2); c != 0 {
		return c
	}
	return strings.Compare(k1, k2)
}

// search returns where k is, or where it would be inserted, and whether it is there.
func (l PreferenceList) search(k PrefKey) (int, bool) {
	return slices.BinarySearchFunc(l, k, func(p Preference, k PrefKey) int {
		return comparePrefKeys(p.Category, p.Key, k.Category, k.Key)
	})
}

// Get returns the preference with key k.
func (l PreferenceList) Get(k PrefKey) (Preference, bool) {
	if i, ok := l.search(k); ok {
		return l[i], true
	}
	return Preference{}, false
}

// Has reports whether the list holds key k.
func (l PreferenceList) Has(k PrefKey) bool {
	_, ok := l.search(k)
	return ok
}

// Put inserts p, or replaces the preference with its key, in place.
func (l *PreferenceList) Put(p Preference) {
	i, ok := l.search(PrefKey{p.Category, p.Key})
	if ok {
		(*l)[i] = p
		return
	}
	*l = slices.Insert(*l, i, p)
}

// Remove deletes the preference with key k, in place, and reports whether it was there.
func (l *PreferenceList) Remove(k PrefKey) bool {
	i, ok := l.search(k)
	if ok {
		*l = slices.Delete(*l, i, i+1)
	}
	return ok
}

// Category returns the preferences of one category ("" for all), in order. The
// result shares the list's array and must not be modified.
func (l PreferenceList) Category(c string) PreferenceList {
	if c == "" {
		return l[:len(l):len(l)]
	}
	lo, _ := slices.BinarySearchFunc(l, c, func(p Preference, c string) int {
		return comparePrefKeys(p.Category, "", c, "")
	})
	hi := lo
	for hi < len(l) && l[hi].Category == c {
		hi++
	}
	return l[lo:hi:hi]
}

// SortPreferences puts preferences read in any order (rows, a snapshot) in the
// list's order; of two with the same key the last one read is kept.
func SortPreferences(ps []Preference) PreferenceList {
	slices.SortStableFunc(ps, func(a, b Preference) int {
		return comparePrefKeys(a.Category, a.Key, b.Category, b.Key)
	})
	out := ps[:0]
	for i, p := range ps {
		if i+1 < len(ps) && ps[i+1].Category == p.Category && ps[i+1].Key == p.Key {
			continue
		}
		out = append(out, p)
	}
	return PreferenceList(out)
}

// knownPreferenceNames maps each category and default key to one shared string.
var knownPreferenceNames = func() map[string]string {
	m := map[string]string{}
	for _, c := range Categories {
		m[c] = c
	}
	for _, d := range DefaultPreferences {
		m[d.Key] = d.Key
	}
	return m
}()

// ShareNames makes p's category and key, when they are a known category or a
// default key, the process's one copy of that string instead of the copy that
// was just decoded (16 bytes each, 32 strings for a typical user).
func (p *Preference) ShareNames() {
	if c, ok := knownPreferenceNames[p.Category]; ok {
		p.Category = c
	}
	if k, ok := knownPreferenceNames[p.Key]; ok {
		p.Key = k
	}
}

// defaultPreferenceValues are DefaultPreferences' values, shared by every new
// user's preferences: values are never modified in place (a write replaces the
// slice), and the capacity is capped so that no append can write into them.
var defaultPreferenceValues = func() []json.RawMessage {
	out := make([]json.RawMessage, len(DefaultPreferences))
	for i, d := range DefaultPreferences {
		v := []byte(d.Value)
		out[i] = v[:len(v):len(v)]
	}
	return out
}()
