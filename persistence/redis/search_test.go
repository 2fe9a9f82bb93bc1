package redis

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	json "github.com/goccy/go-json"

	userservice "github.com/lms-platform/userservice"
)

// memSearch is a SearchSource over a fixed answer whose generation the test moves
// by hand, counting the searches that reach it.
type memSearch struct {
	mu       sync.Mutex
	gen      int
	users    []userservice.User
	searches int
	lookups  int // generation reads: the first step of every cache lookup
	genErr   error
}

func (m *memSearch) SearchGeneration(context.Context) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lookups++
	if m.genErr != nil {
		return "", m.genErr
	}
	return "epoch:" + string(rune('a'+m.gen)), nil
}

func (m *memSearch) SearchUsersAt(_ context.Context, q userservice.UserSearch) ([]userservice.User, userservice.Pagination, string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.searches++
	users := append([]userservice.User(nil), m.users...)
	return users, userservice.NewPagination(q.Page, q.Limit, len(users)), "epoch:" + string(rune('a'+m.gen)), nil
}

func (m *memSearch) set(f func(m *memSearch)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f(m)
}

func (m *memSearch) count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.searches
}

func newTestSearchCache(tb testing.TB, c *Client, src SearchSource, cfg SearchCacheConfig) *SearchCache {
	tb.Helper()
	s, err := NewSearchCache(c, src, cfg, testLogger())
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// waitStores waits until no entry write of s is in flight.
func waitStores(tb testing.TB, s *SearchCache) {
	tb.Helper()
	eventually(tb, 5*time.Second, "the entry writes are done", func() bool { return len(s.stores) == 0 })
}

var cacheQuery = userservice.UserSearch{Page: 1, Limit: 20, Search: "ali", SortBy: "createdAt", SortOrder: "asc"}

// search runs q through the cache and returns the first user's bio and how many
// searches reached the source.
func search(tb testing.TB, s *SearchCache, src *memSearch, q userservice.UserSearch) (string, int) {
	tb.Helper()
	users, page, err := s.SearchUsers(context.Background(), q)
	if err != nil {
		tb.Fatalf("SearchUsers: %v", err)
	}
	if len(users) != 1 || page.Total != 1 || users[0].Bio == nil {
		tb.Fatalf("SearchUsers: %+v %+v", users, page)
	}
	return *users[0].Bio, src.count()
}

func TestSearchCache(t *testing.T) {
	ctx := context.Background()
	user := typicalState(t).User
	withBio := func(bio string) []userservice.User {
		u := user
		u.Bio = &bio
		return []userservice.User{u}
	}

	t.Run("serves the entry of the current generation and nothing older", func(t *testing.T) {
		c := newTestClient(t, Config{})
		src := &memSearch{users: withBio("first")}
		s := newTestSearchCache(t, c, src, SearchCacheConfig{})
		if bio, n := search(t, s, src, cacheQuery); bio != "first" || n != 1 {
			t.Fatalf("first search: %q, %d at the source", bio, n)
		}
		waitStores(t, s)
		hits := counterDelta(searchHits)
		if bio, n := search(t, s, src, cacheQuery); bio != "first" || n != 1 || hits() != 1 {
			t.Fatalf("cached search: %q, %d at the source, %d hits", bio, n, hits())
		}
		// Another query is another entry.
		other := cacheQuery
		other.SortOrder = "desc"
		if _, n := search(t, s, src, other); n != 2 {
			t.Fatalf("another query: %d at the source, want 2", n)
		}
		// A write: a new generation, a new answer; the old entry is never read again.
		src.set(func(m *memSearch) { m.gen++; m.users = withBio("second") })
		if bio, n := search(t, s, src, cacheQuery); bio != "second" || n != 3 {
			t.Fatalf("after a write: %q, %d at the source", bio, n)
		}
	})

	t.Run("under steady writes no search looks and every eighth offers its answer; an answer already offered makes all look again", func(t *testing.T) {
		c := newTestClient(t, Config{})
		src := &memSearch{users: withBio("busy")}
		s := newTestSearchCache(t, c, src, SearchCacheConfig{})
		lookups := func() int {
			src.mu.Lock()
			defer src.mu.Unlock()
			return src.lookups
		}
		skipped := counterDelta(searchSkipped)
		// A write between any two searches: every lookup misses.
		for i := range coldAfter {
			if _, n := search(t, s, src, cacheQuery); n != i+1 || lookups() != i+1 {
				t.Fatalf("search %d: %d at the source, %d lookups", i+1, n, lookups())
			}
			src.set(func(m *memSearch) { m.gen++ })
		}
		for i := range 4 * probeEvery {
			if _, n := search(t, s, src, cacheQuery); n != coldAfter+i+1 {
				t.Fatalf("cold search %d: %d at the source", i+1, n)
			}
			src.set(func(m *memSearch) { m.gen++ })
		}
		waitStores(t, s)
		if lookups() != coldAfter || skipped() != 4*(probeEvery-1) {
			t.Fatalf("after %d cold searches: %d lookups, %d skipped; want none and %d",
				4*probeEvery, lookups()-coldAfter, skipped(), 4*(probeEvery-1))
		}
		// The writes stop: a probe stores the answer, the next probe finds it
		// there, and from then on every search looks (and hits).
		hits := counterDelta(searchHits)
		for range 3 * probeEvery {
			search(t, s, src, cacheQuery)
			waitStores(t, s)
		}
		if hits() == 0 {
			t.Fatal("no probe found the stored answer once the writes stopped")
		}
		before, atSource := lookups(), src.count()
		for range probeEvery {
			search(t, s, src, cacheQuery)
		}
		if lookups() != before+probeEvery || src.count() != atSource {
			t.Fatalf("warm again: %d lookups and %d at the source for %d searches; want every one a hit",
				lookups()-before, src.count()-atSource, probeEvery)
		}
	})

	t.Run("an unreadable entry is a miss and is replaced", func(t *testing.T) {
		c := newTestClient(t, Config{})
		src := &memSearch{users: withBio("real")}
		s := newTestSearchCache(t, c, src, SearchCacheConfig{})
		gen, _ := src.SearchGeneration(ctx)
		key := s.key(gen, cacheQuery)
		for _, junk := range []string{"", "\x09{}", "\x01{\"page\":{}}\n[]", "\x02{not json\n[]", "\x02{}", "\x02{}\n{}"} {
			waitStores(t, s) // the answer of the previous round is stored before the junk
			if err := c.rdb.Do(ctx, c.rdb.B().Set().Key(key).Value(junk).Build()).Error(); err != nil {
				t.Fatal(err)
			}
			before := src.count()
			if bio, n := search(t, s, src, cacheQuery); bio != "real" || n != before+1 {
				t.Fatalf("entry %q: %q, %d at the source", junk, bio, n-before)
			}
		}
		eventually(t, 5*time.Second, "the entry is replaced", func() bool {
			b, err := c.rdb.Do(ctx, c.rdb.B().Get().Key(key).Build()).AsBytes()
			_, _, derr := decodeSearchEntry(b)
			return err == nil && derr == nil
		})
	})

	t.Run("an answer over the size limit is not stored", func(t *testing.T) {
		c := newTestClient(t, Config{})
		src := &memSearch{users: withBio(strings.Repeat("x", 4096))}
		s := newTestSearchCache(t, c, src, SearchCacheConfig{MaxEntryBytes: 1024})
		big := counterDelta(searchStoreBig)
		search(t, s, src, cacheQuery)
		search(t, s, src, cacheQuery)
		if big() != 2 || src.count() != 2 {
			t.Fatalf("too large: %d counted, %d at the source; want 2 and 2", big(), src.count())
		}
	})

	t.Run("entries expire after the TTL", func(t *testing.T) {
		c := newTestClient(t, Config{})
		src := &memSearch{users: withBio("ttl")}
		s := newTestSearchCache(t, c, src, SearchCacheConfig{TTL: 5 * time.Second})
		search(t, s, src, cacheQuery)
		waitStores(t, s)
		gen, _ := src.SearchGeneration(ctx)
		ttl, err := c.rdb.Do(ctx, c.rdb.B().Pttl().Key(s.key(gen, cacheQuery)).Build()).AsInt64()
		if err != nil || ttl <= 0 || ttl > 5000 {
			t.Fatalf("PTTL = %d (%v), want 1-5000 ms", ttl, err)
		}
	})

	t.Run("Redis down: every search goes to the source", func(t *testing.T) {
		c, err := Open(ctx, Config{URL: closedPortURL(t), KeyPrefix: randomPrefix(), DialTimeout: time.Second}, testLogger())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		src := &memSearch{users: withBio("down")}
		s := newTestSearchCache(t, c, src, SearchCacheConfig{})
		for i := 1; i <= 3; i++ {
			start := time.Now()
			if bio, n := search(t, s, src, cacheQuery); bio != "down" || n != i {
				t.Fatalf("search %d: %q, %d at the source", i, bio, n)
			}
			if took := time.Since(start); took > 50*time.Millisecond {
				t.Errorf("search %d took %v with Redis known down", i, took)
			}
		}
	})

	t.Run("the generation cannot be read: the search fails", func(t *testing.T) {
		c := newTestClient(t, Config{})
		down := userservice.Wrap(userservice.ECodeUnavailable, "Service temporarily unavailable", errors.New("database down"))
		src := &memSearch{users: withBio("x"), genErr: down}
		s := newTestSearchCache(t, c, src, SearchCacheConfig{})
		if _, _, err := s.SearchUsers(ctx, cacheQuery); !errors.Is(err, down) {
			t.Fatalf("SearchUsers: %v, want the source's error", err)
		}
	})
}

// TestSearchEntryJSON: the cached users are the JSON the API renders, and the
// typed and raw answers agree, from PostgreSQL and from the cache.
func TestSearchEntryJSON(t *testing.T) {
	ctx := context.Background()
	users := []userservice.User{typicalState(t).User, registered(t, time.Now()).User}
	want, err := json.Marshal(users)
	if err != nil {
		t.Fatal(err)
	}
	c := newTestClient(t, Config{})
	src := &memSearch{users: users}
	s := newTestSearchCache(t, c, src, SearchCacheConfig{})
	for _, from := range []string{"PostgreSQL", "the cache"} {
		raw, page, err := s.SearchUsersJSON(ctx, cacheQuery)
		if err != nil || !bytes.Equal(raw, want) || page.Total != 2 {
			t.Fatalf("from %s: %s (total %d, %v)\nwant %s", from, raw, page.Total, err, want)
		}
		waitStores(t, s)
		typed, _, err := s.SearchUsers(ctx, cacheQuery)
		if err != nil || !reflect.DeepEqual(mustJSON(t, typed), want) {
			t.Fatalf("from %s, typed: %v", from, err)
		}
	}
	if src.count() != 1 { // the first search; every later one hits
		t.Errorf("%d searches reached the source, want 1", src.count())
	}
	empty := &memSearch{}
	s = newTestSearchCache(t, newTestClient(t, Config{}), empty, SearchCacheConfig{})
	if raw, _, err := s.SearchUsersJSON(ctx, cacheQuery); err != nil || string(raw) != "[]" {
		t.Errorf("no users: %s, %v; want []", raw, err)
	}
}

func mustJSON(tb testing.TB, v any) []byte {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// TestSearchKeyHash: the generation and every field of the query are part of the key.
func TestSearchKeyHash(t *testing.T) {
	base := userservice.UserSearch{Page: 1, Limit: 20, Search: "ab", Role: userservice.RoleStudent,
		Status: userservice.StatusActive, SortBy: "email", SortOrder: "asc"}
	variants := map[string]func(q *userservice.UserSearch){
		"page":           func(q *userservice.UserSearch) { q.Page = 2 },
		"limit":          func(q *userservice.UserSearch) { q.Limit = 21 },
		"search":         func(q *userservice.UserSearch) { q.Search = "Ab" },
		"empty search":   func(q *userservice.UserSearch) { q.Search = "" },
		"role":           func(q *userservice.UserSearch) { q.Role = "" },
		"status":         func(q *userservice.UserSearch) { q.Status = userservice.StatusDeleted },
		"sortBy":         func(q *userservice.UserSearch) { q.SortBy = "firstName" },
		"sortOrder":      func(q *userservice.UserSearch) { q.SortOrder = "desc" },
		"shifted fields": func(q *userservice.UserSearch) { q.Search = "ab" + "5:student"; q.Role = "" },
	}
	const gen = "db/s/t/10:12:10,11"
	seen := map[string]string{searchKeyHash(gen, base): "base", searchKeyHash(gen+"0", base): "another generation"}
	for name, change := range variants {
		q := base
		change(&q)
		h := searchKeyHash(gen, q)
		if other, dup := seen[h]; dup {
			t.Errorf("%s has the hash of %s", name, other)
		}
		seen[h] = name
	}
	if searchKeyHash(gen, base) != searchKeyHash(gen, base) {
		t.Error("the hash of one query changes")
	}
}

// BenchmarkSearchCacheHit is the admin search answered from the cache: the Redis
// GET of a 20-user page, as the service uses it (raw: the users' JSON as stored)
// and decoded into users (typed). The generation read is the source's, here in
// memory; in the service it is one PostgreSQL query that reads no table. Compare
// with persistence/postgres BenchmarkSearchUsers10k, the query a hit saves.
func BenchmarkSearchCacheHit(b *testing.B) {
	c := newTestClient(b, Config{})
	users := make([]userservice.User, 20)
	for i := range users {
		users[i] = typicalState(b).User
	}
	src := &memSearch{users: users}
	s := newTestSearchCache(b, c, src, SearchCacheConfig{})
	ctx := context.Background()
	if _, _, err := s.SearchUsersJSON(ctx, cacheQuery); err != nil {
		b.Fatal(err)
	}
	waitStores(b, s)
	b.Run("raw", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if raw, _, err := s.SearchUsersJSON(ctx, cacheQuery); err != nil || len(raw) < 100 {
				b.Fatalf("SearchUsersJSON: %d bytes, %v", len(raw), err)
			}
		}
	})
	b.Run("typed", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if got, _, err := s.SearchUsers(ctx, cacheQuery); err != nil || len(got) != 20 {
				b.Fatalf("SearchUsers: %d users, %v", len(got), err)
			}
		}
	})
	if src.count() != 1 {
		b.Fatalf("%d searches reached the source, want 1", src.count())
	}
}

// TestSearchEntryKeepsKeysetFields: a cached page keeps what the edge needs for
// the next cursor (the position, count=none), and a cursor or count mode is part
// of the key.
func TestSearchEntryKeepsKeysetFields(t *testing.T) {
	page := userservice.Pagination{Page: 3, Limit: 2, HasNext: true, HasPrev: true, Uncounted: true,
		Next: &userservice.Position{Key: "2024-01-15T10:30:00.123456Z", ID: userservice.NewID()}}
	b, err := encodeSearchEntry([]byte("[]"), page)
	if err != nil {
		t.Fatal(err)
	}
	_, got, err := decodeSearchEntry(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.Next == nil || *got.Next != *page.Next || !got.Uncounted || got.Page != 3 || !got.HasNext {
		t.Errorf("decoded %+v, want %+v", got, page)
	}
	q := userservice.UserSearch{Page: 2, Limit: 2}
	keys := map[string]bool{searchKeyHash("g", q): true}
	q.Count = userservice.CountNone
	keys[searchKeyHash("g", q)] = true
	q.After = &userservice.Position{Key: "a", ID: "b"}
	keys[searchKeyHash("g", q)] = true
	q.After = &userservice.Position{Key: "a", ID: "c"}
	keys[searchKeyHash("g", q)] = true
	if len(keys) != 4 {
		t.Errorf("%d distinct keys for 4 queries", len(keys))
	}
}
