package postgres_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/lms-platform/userservice"
	"github.com/lms-platform/userservice/persistence/postgres"
	"github.com/lms-platform/userservice/persistence/postgres/pgtest"
)

// TestAttributeSchemasAcrossProcesses: two stores on one database stand for two
// processes with their own caches. A namespace created through one is found by
// the other at once (a cache miss is always checked); a schema changed through
// one is seen by the other once its check interval passed, not before.
func TestAttributeSchemasAcrossProcesses(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	const interval = 2 * time.Second // long enough that a slow machine stays within it
	a, err := postgres.NewAttributeSchemas(db, interval)
	if err != nil {
		t.Fatal(err)
	}
	b, err := postgres.NewAttributeSchemas(db, interval)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Schema(ctx, "hr"); !errors.Is(err, userservice.ErrAttributeSchemaNotFound) {
		t.Fatalf("before any schema: %v", err)
	}
	parse := func(doc string) *userservice.AttributeSchema {
		t.Helper()
		s, err := userservice.ParseAttributeSchema("hr", []byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	v1, err := a.PutSchema(ctx, parse(`{"properties": {"grade": {"type": "integer"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	got, err := b.Schema(ctx, "hr")
	if err != nil || got.Version != v1.Version || got.Properties["grade"].Type != userservice.AttrInteger {
		t.Fatalf("the other process reads %+v, %v", got, err)
	}
	v2, err := a.PutSchema(ctx, parse(`{"properties": {"grade": {"type": "string"}}}`))
	if err != nil || v2.Version <= v1.Version {
		t.Fatalf("second put: %+v, %v", v2, err)
	}
	if got, _ := a.Schema(ctx, "hr"); got.Version != v2.Version {
		t.Fatalf("the writing process reads version %d, want %d", got.Version, v2.Version)
	}
	if got, _ := b.Schema(ctx, "hr"); got.Version != v1.Version {
		t.Fatalf("within the interval the other process already reads version %d (cache not used?)", got.Version)
	}
	time.Sleep(interval + 50*time.Millisecond)
	if got, _ := b.Schema(ctx, "hr"); got.Version != v2.Version || got.Properties["grade"].Type != userservice.AttrString {
		t.Fatalf("after the interval the other process reads %+v", got)
	}
	list, err := b.Schemas(ctx)
	if err != nil || len(list) != 1 || list[0].Namespace != "hr" {
		t.Fatalf("Schemas = %v, %v", list, err)
	}
}
