// Package migrations embeds the numbered SQL migrations of the service's schema, so
// that the service and the tests apply exactly the same files. They are applied by
// persistence/postgres with pressly/goose.
package migrations

import "embed"

// FS holds the migration files, named NNNNN_description.sql.
//
//go:embed *.sql
var FS embed.FS
