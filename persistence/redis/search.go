package redis

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	json "github.com/goccy/go-json"
	"github.com/redis/rueidis"

	userservice "github.com/lms-platform/userservice"
)

var (
	searchHits        = metrics.GetOrCreateCounter(`user_service_cache_hits_total{cache="search"}`)
	searchMissAbsent  = metrics.GetOrCreateCounter(`user_service_cache_misses_total{cache="search",reason="absent"}`)
	searchMissError   = metrics.GetOrCreateCounter(`user_service_cache_misses_total{cache="search",reason="error"}`)
	searchStoreOK     = metrics.GetOrCreateCounter(`user_service_search_cache_writes_total{result="stored"}`)
	searchStoreErr    = metrics.GetOrCreateCounter(`user_service_search_cache_writes_total{result="error"}`)
	searchStoreBig    = metrics.GetOrCreateCounter(`user_service_search_cache_writes_total{result="too_large"}`)
	searchStoreBusy   = metrics.GetOrCreateCounter(`user_service_search_cache_writes_total{result="dropped_busy"}`)
	searchDecodeError = metrics.GetOrCreateCounter(`user_service_search_cache_decode_errors_total`)
	searchSkipped     = metrics.GetOrCreateCounter(`user_service_search_cache_skipped_total`)
)

// Defaults of [SearchCacheConfig].
const (
	DefaultSearchTTL      = 120 * time.Second // CACHE_TTL_USER_SEARCH
	DefaultMaxSearchBytes = 512 << 10
)

// maxSearchStoresInFlight bounds the asynchronous writes of search results.
const maxSearchStoresInFlight = 32

// After coldAfter lookups in a row found nothing, only one search in probeEvery
// looks in the cache (and stores its answer); the others go straight to
// PostgreSQL. A hit makes every search look again.
const (
	coldAfter  = 16
	probeEvery = 8
)

// searchEntryVersion is the first byte of a stored entry; an entry of another
// version is a miss.
const searchEntryVersion = 3

// SearchSource runs the admin search and says which generation of the data an
// answer belongs to: two reads at the same generation see the same rows.
// persistence/postgres implements it with the MVCC snapshot.
type SearchSource interface {
	// SearchGeneration returns the current generation.
	SearchGeneration(ctx context.Context) (string, error)
	// SearchUsersAt runs the search and returns the generation of the snapshot it
	// read.
	SearchUsersAt(ctx context.Context, q userservice.UserSearch) ([]userservice.User, userservice.Pagination, string, error)
}

// SearchCacheConfig configures [NewSearchCache].
type SearchCacheConfig struct {
	// TTL is CACHE_TTL_USER_SEARCH: how long an entry stays in Redis. It bounds
	// memory only; freshness comes from the generation in the key.
	TTL time.Duration
	// MaxEntryBytes bounds one stored answer; a larger one is not stored.
	MaxEntryBytes int
}

// SearchCache is the admin search's short Redis cache (CONTRACT.md: "Admin search
// goes to PostgreSQL directly (with its own short Redis cache)"; "Search reflects
// every acknowledged write (a cache is allowed only if writes invalidate it, e.g. a
// generation number in its key)").
//
// An answer is stored under the generation of the PostgreSQL snapshot it was read
// in, and a search first reads the current generation (one query that reads no
// table) and looks only under that one. A generation names one MVCC snapshot, and
// any commit makes a new one, so an entry is found only while nothing has been
// committed since it was read: it is exactly what PostgreSQL would answer. Nothing
// has to be invalidated on a write (writes pay nothing), a crash between commit
// and cache write cannot leave a stale entry behind, and several processes share
// entries safely. Redis errors never fail a search: it goes to PostgreSQL.
//
// Entries hold the users as the API renders them (SearchUsersJSON); SearchUsers
// decodes them, so its users carry only the fields of the API's User object. It is
// safe for concurrent use.
type SearchCache struct {
	c      *Client
	src    SearchSource
	cfg    SearchCacheConfig
	ttlMS  int64
	log    *slog.Logger
	stores chan struct{} // semaphore of asynchronous entry writes
	misses atomic.Int64  // lookups in a row that found no entry
	probes atomic.Int64  // searches while cold (see coldAfter)
}

// NewSearchCache returns the cache in front of src.
func NewSearchCache(c *Client, src SearchSource, cfg SearchCacheConfig, log *slog.Logger) (*SearchCache, error) {
	switch {
	case c == nil:
		return nil, errors.New("cannot create search cache: nil client")
	case src == nil:
		return nil, errors.New("cannot create search cache: nil search source")
	case log == nil:
		return nil, errors.New("cannot create search cache: nil logger")
	case cfg.TTL < 0 || cfg.MaxEntryBytes < 0:
		return nil, errors.New("cannot create search cache: negative TTL or entry size")
	}
	if cfg.TTL == 0 {
		cfg.TTL = DefaultSearchTTL
	}
	if cfg.MaxEntryBytes == 0 {
		cfg.MaxEntryBytes = DefaultMaxSearchBytes
	}
	return &SearchCache{
		c: c, src: src, cfg: cfg, ttlMS: max(cfg.TTL.Milliseconds(), 1), log: log,
		stores: make(chan struct{}, maxSearchStoresInFlight),
	}, nil
}

// SearchUsers answers the admin search (see SearchUsersJSON) as users.
func (s *SearchCache) SearchUsers(ctx context.Context, q userservice.UserSearch) ([]userservice.User, userservice.Pagination, error) {
	raw, page, err := s.SearchUsersJSON(ctx, q)
	if err != nil {
		return nil, userservice.Pagination{}, err
	}
	users := []userservice.User{}
	if err := json.Unmarshal(raw, &users); err != nil {
		return nil, userservice.Pagination{}, userservice.Wrap(userservice.ECodeInternal, "cannot decode search result", err)
	}
	return users, page, nil
}

// SearchUsersJSON answers the admin search with the JSON array of the page's users
// (as the HTTP edge renders them) and the pagination: from the entry of the
// current generation, or from PostgreSQL (storing the answer in the background).
// A hit is then a copy of bytes, with no decoding and encoding of users.
//
// Under steady writes no entry can be found (every commit is a new generation),
// and a lookup only adds two round trips (the generation, the GET) before the
// search itself. So once coldAfter lookups in a row missed, no search looks: each
// goes to PostgreSQL, and one in probeEvery offers its answer to the cache
// afterwards (SET NX under the generation it was read at). Finding an entry
// there already (the writes have stopped and an earlier probe stored this very
// answer) makes every search look again. Skipping a lookup never changes an
// answer: it is PostgreSQL's either way.
func (s *SearchCache) SearchUsersJSON(ctx context.Context, q userservice.UserSearch) ([]byte, userservice.Pagination, error) {
	if !s.c.Up() {
		searchMissError.Inc()
		return s.searchPrimary(ctx, q, storeNone)
	}
	if s.misses.Load() >= coldAfter {
		if s.probes.Add(1)%probeEvery != 0 {
			searchSkipped.Inc()
			return s.searchPrimary(ctx, q, storeNone)
		}
		// A probe: searched first, then offered to the cache only if no entry
		// of its generation is there yet (SET NX, in the background); one
		// that is there means the search would have hit, and every search
		// looks again. So a probe adds no round trip before its answer.
		return s.searchPrimary(ctx, q, storeProbe)
	}
	gen, err := s.src.SearchGeneration(ctx)
	if err != nil {
		return nil, userservice.Pagination{}, err // PostgreSQL is needed either way
	}
	var b []byte
	err = s.c.call(ctx, func(ctx context.Context) error {
		var err error
		b, err = s.c.rdb.Do(ctx, s.c.rdb.B().Get().Key(s.key(gen, q)).Build()).AsBytes()
		return err
	})
	switch {
	case rueidis.IsRedisNil(err):
		searchMissAbsent.Inc()
		s.misses.Add(1)
		return s.searchPrimary(ctx, q, storeAlways)
	case err != nil:
		searchMissError.Inc()
		return s.searchPrimary(ctx, q, storeAlways)
	}
	raw, page, err := decodeSearchEntry(b)
	if err != nil {
		searchDecodeError.Inc()
		s.log.Warn("unreadable search cache entry; searching PostgreSQL", "error", err.Error())
		return s.searchPrimary(ctx, q, storeAlways)
	}
	searchHits.Inc()
	s.misses.Store(0)
	return raw, page, nil
}

// How searchPrimary offers its answer to the cache.
type storeMode int

const (
	storeNone   storeMode = iota
	storeAlways           // SET: a lookup found nothing usable
	storeProbe            // SET NX: a cold probe (see SearchUsersJSON)
)

// searchPrimary searches PostgreSQL and, unless store is storeNone, stores the
// answer under the generation it was read at.
func (s *SearchCache) searchPrimary(ctx context.Context, q userservice.UserSearch, store storeMode) ([]byte, userservice.Pagination, error) {
	users, page, gen, err := s.src.SearchUsersAt(ctx, q)
	if err != nil {
		return nil, userservice.Pagination{}, err
	}
	if users == nil {
		users = []userservice.User{}
	}
	raw, err := json.Marshal(users)
	if err != nil {
		return nil, userservice.Pagination{}, userservice.Wrap(userservice.ECodeInternal, "cannot encode search result", err)
	}
	if store == storeNone || !s.c.Up() {
		return raw, page, nil
	}
	b, err := encodeSearchEntry(raw, page)
	if err != nil {
		s.log.Warn("cannot encode search cache entry", "error", err.Error())
		return raw, page, nil
	}
	if len(b) > s.cfg.MaxEntryBytes {
		searchStoreBig.Inc()
		return raw, page, nil
	}
	select {
	case s.stores <- struct{}{}:
		key := s.key(gen, q)
		go func() {
			defer func() { <-s.stores }()
			// Detached from the request, which may end first; the client's command
			// timeout bounds it.
			if err := s.store(context.WithoutCancel(ctx), key, b, store == storeProbe); err != nil {
				s.log.Debug("cannot store search cache entry", "error", err.Error())
			}
		}()
	default:
		searchStoreBusy.Inc()
	}
	return raw, page, nil
}

// store writes an entry. A probe writes it only if the key is absent, and an
// entry already there (the same query at the same generation, stored by an
// earlier search) makes every search look again: it would have been a hit.
func (s *SearchCache) store(ctx context.Context, key string, b []byte, probe bool) error {
	var present bool
	err := s.c.call(ctx, func(ctx context.Context) error {
		set := s.c.rdb.B().Set().Key(key).Value(rueidis.BinaryString(b))
		if !probe {
			return s.c.rdb.Do(ctx, set.PxMilliseconds(s.ttlMS).Build()).Error()
		}
		err := s.c.rdb.Do(ctx, set.Nx().PxMilliseconds(s.ttlMS).Build()).Error()
		if rueidis.IsRedisNil(err) {
			present = true
			return nil
		}
		return err
	})
	switch {
	case err != nil:
		searchStoreErr.Inc()
		return unavailable("store search result", err)
	case present:
		s.misses.Store(0)
		return nil
	}
	if probe {
		searchMissAbsent.Inc()
	}
	searchStoreOK.Inc()
	return nil
}

// key is <prefix>search:<hash of the generation and the query>, a key of fixed
// shape whatever the bytes of the search term.
func (s *SearchCache) key(gen string, q userservice.UserSearch) string {
	return s.c.key("search:", searchKeyHash(gen, q))
}

// searchKeyHash identifies a query at a generation: every field, each
// length-prefixed so that no two pairs share an encoding.
func searchKeyHash(gen string, q userservice.UserSearch) string {
	b := make([]byte, 0, 256)
	var after []string
	if q.After != nil {
		after = []string{"after", q.After.Key, strconv.FormatBool(q.After.Null), q.After.ID}
	}
	for _, f := range q.Attrs { // issue 15: the typed value, as the search uses it
		after = append(after, "attr", f.Namespace, f.Key, string(f.Value))
	}
	for _, f := range append([]string{gen, strconv.Itoa(q.Page), strconv.Itoa(q.Limit), q.Search, string(q.Role), string(q.Status), q.SortBy, q.SortOrder, q.Count}, after...) {
		b = strconv.AppendInt(b, int64(len(f)), 10)
		b = append(b, ':')
		b = append(b, f...)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:20])
}

// entryPage is the pagination as an entry stores it: the API's fields and the
// ones the API does not render (the edge signs Next into nextCursor).
type entryPage struct {
	Page       int                   `json:"page"`
	Limit      int                   `json:"limit"`
	Total      int                   `json:"total"`
	TotalPages int                   `json:"totalPages"`
	HasNext    bool                  `json:"hasNext"`
	HasPrev    bool                  `json:"hasPrev"`
	Uncounted  bool                  `json:"uncounted,omitempty"`
	Next       *userservice.Position `json:"next,omitempty"`
}

// An entry is its format version (one byte), the pagination as compact JSON, a
// newline, and the JSON array of the users as the API renders them.
func encodeSearchEntry(users []byte, page userservice.Pagination) ([]byte, error) {
	p, err := json.Marshal(entryPage{Page: page.Page, Limit: page.Limit, Total: page.Total, TotalPages: page.TotalPages,
		HasNext: page.HasNext, HasPrev: page.HasPrev, Uncounted: page.Uncounted, Next: page.Next})
	if err != nil {
		return nil, fmt.Errorf("cannot encode search pagination: %w", err)
	}
	b := make([]byte, 0, 1+len(p)+1+len(users))
	b = append(b, searchEntryVersion)
	b = append(b, p...)
	b = append(b, '\n')
	return append(b, users...), nil
}

func decodeSearchEntry(b []byte) ([]byte, userservice.Pagination, error) {
	var page userservice.Pagination
	var e entryPage
	if len(b) == 0 || b[0] != searchEntryVersion {
		return nil, page, errors.New("cannot decode search result: unknown entry version")
	}
	p, users, ok := bytes.Cut(b[1:], []byte{'\n'})
	if !ok || len(users) < 2 || users[0] != '[' || users[len(users)-1] != ']' {
		return nil, page, errors.New("cannot decode search result: no users array")
	}
	if err := json.Unmarshal(p, &e); err != nil {
		return nil, page, fmt.Errorf("cannot decode search pagination: %w", err)
	}
	page = userservice.Pagination{Page: e.Page, Limit: e.Limit, Total: e.Total, TotalPages: e.TotalPages,
		HasNext: e.HasNext, HasPrev: e.HasPrev, Uncounted: e.Uncounted, Next: e.Next}
	return users, page, nil
}
