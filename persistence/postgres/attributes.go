package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/lms-platform/userservice"
)

// AttributeSchemas stores the custom attribute schemas (issue 15) in the
// attribute_schemas table and keeps all of them in memory. Several processes
// may write schemas, so the cache is checked against the table's max(version)
// (one index-free read of a small table) at most once per CheckInterval; a
// namespace missing from the cache is always checked at once, so a schema
// created on another node is usable there immediately, and a schema changed on
// another node is seen within CheckInterval. It is safe for concurrent use.
type AttributeSchemas struct {
	db            *DB
	checkInterval time.Duration

	mu        sync.Mutex
	byNS      map[string]*userservice.AttributeSchema
	version   int64 // max(version) the cache reflects
	checkedAt time.Time
}

var _ userservice.AttributeSchemas = (*AttributeSchemas)(nil)

// NewAttributeSchemas returns a store over db whose cache is checked at most once
// per checkInterval (1s when 0).
func NewAttributeSchemas(db *DB, checkInterval time.Duration) (*AttributeSchemas, error) {
	if db == nil {
		return nil, errors.New("cannot create attribute schemas: nil DB")
	}
	if checkInterval <= 0 {
		checkInterval = time.Second
	}
	return &AttributeSchemas{db: db, checkInterval: checkInterval}, nil
}

// storedSchema is the jsonb document kept per namespace.
type storedSchema struct {
	Type       string                                   `json:"type"`
	Properties map[string]userservice.AttributeProperty `json:"properties"`
	Required   []string                                 `json:"required,omitempty"`
}

// PutSchema creates or replaces s's namespace.
func (a *AttributeSchemas) PutSchema(ctx context.Context, s *userservice.AttributeSchema) (*userservice.AttributeSchema, error) {
	doc, err := json.Marshal(storedSchema{Type: "object", Properties: s.Properties, Required: s.Required})
	if err != nil {
		return nil, fmt.Errorf("cannot encode schema: %w", err)
	}
	ctx, cancel := a.db.timeout(ctx)
	defer cancel()
	var version int64
	var at time.Time
	err = a.db.pool.QueryRow(ctx, `INSERT INTO attribute_schemas (namespace, schema, version, updated_at)
	VALUES ($1, $2::text::jsonb, nextval('attribute_schema_version_seq'), now())
	ON CONFLICT (namespace) DO UPDATE SET schema = EXCLUDED.schema, version = EXCLUDED.version, updated_at = EXCLUDED.updated_at
	RETURNING version, updated_at`, s.Namespace, string(doc)).Scan(&version, &at)
	if err != nil {
		return nil, unavailable("cannot store attribute schema "+s.Namespace, err)
	}
	out := *s
	out.Type, out.Version, out.UpdatedAt = "object", version, userservice.NewTime(at)
	a.mu.Lock()
	a.checkedAt = time.Time{} // the next read reloads: other namespaces may have moved too
	a.mu.Unlock()
	return &out, nil
}

// Schema returns the namespace's schema or userservice.ErrAttributeSchemaNotFound.
func (a *AttributeSchemas) Schema(ctx context.Context, namespace string) (*userservice.AttributeSchema, error) {
	if err := a.refresh(ctx, false); err != nil {
		return nil, err
	}
	a.mu.Lock()
	s, ok := a.byNS[namespace]
	a.mu.Unlock()
	if !ok {
		if err := a.refresh(ctx, true); err != nil {
			return nil, err
		}
		a.mu.Lock()
		s, ok = a.byNS[namespace]
		a.mu.Unlock()
		if !ok {
			return nil, userservice.ErrAttributeSchemaNotFound
		}
	}
	return s, nil
}

// Schemas returns every schema ordered by namespace.
func (a *AttributeSchemas) Schemas(ctx context.Context) ([]*userservice.AttributeSchema, error) {
	if err := a.refresh(ctx, false); err != nil {
		return nil, err
	}
	a.mu.Lock()
	out := make([]*userservice.AttributeSchema, 0, len(a.byNS))
	for _, s := range a.byNS {
		out = append(out, s)
	}
	a.mu.Unlock()
	slices.SortFunc(out, func(x, y *userservice.AttributeSchema) int { return strings.Compare(x.Namespace, y.Namespace) })
	return out, nil
}

// refresh reloads the cache when max(version) moved; unless force, it checks at
// most once per checkInterval.
func (a *AttributeSchemas) refresh(ctx context.Context, force bool) error {
	a.mu.Lock()
	fresh := a.byNS != nil && time.Since(a.checkedAt) < a.checkInterval
	cached := a.version
	a.mu.Unlock()
	if fresh && !force {
		return nil
	}
	ctx, cancel := a.db.timeout(ctx)
	defer cancel()
	var version int64
	if err := a.db.pool.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM attribute_schemas`).Scan(&version); err != nil {
		return unavailable("cannot check attribute schemas", err)
	}
	now := time.Now()
	if version == cached && a.byNSLoaded() {
		a.mu.Lock()
		a.checkedAt = now
		a.mu.Unlock()
		return nil
	}
	rows, err := a.db.pool.Query(ctx, `SELECT namespace, schema::text, version, updated_at FROM attribute_schemas`)
	if err != nil {
		return unavailable("cannot load attribute schemas", err)
	}
	m := map[string]*userservice.AttributeSchema{}
	var top int64
	for rows.Next() {
		var ns, doc string
		var v int64
		var at time.Time
		if err := rows.Scan(&ns, &doc, &v, &at); err != nil {
			rows.Close()
			return unavailable("cannot load attribute schemas", err)
		}
		var st storedSchema
		if err := json.Unmarshal([]byte(doc), &st); err != nil {
			rows.Close()
			return userservice.Wrap(userservice.ECodeInternal, "corrupt attribute schema "+ns, err)
		}
		if st.Properties == nil {
			st.Properties = map[string]userservice.AttributeProperty{}
		}
		m[ns] = &userservice.AttributeSchema{Namespace: ns, Type: "object", Properties: st.Properties,
			Required: st.Required, Version: v, UpdatedAt: userservice.NewTime(at)}
		top = max(top, v)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return unavailable("cannot load attribute schemas", err)
	}
	a.mu.Lock()
	if a.byNS == nil || top >= a.version {
		a.byNS, a.version, a.checkedAt = m, top, now
	}
	a.mu.Unlock()
	return nil
}

func (a *AttributeSchemas) byNSLoaded() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.byNS != nil
}
