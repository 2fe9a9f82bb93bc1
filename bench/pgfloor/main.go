// Command pgfloor measures what PostgreSQL alone spends per PUT /me write, with
// the writer's statements sent one per row (-mode rows) or as set statements over
// arrays (-mode set; docs/design.md, "Set statements"): no service, no relay, no
// HTTP. It reads -users of a seeded schema (go run ./cmd/seed -schema S), sends
// batches of -batch profile updates (the fenced UPDATE of users with every column
// and one outbox row each) from -c connections for -d, and prints writes/s and the
// CPU time of every postgres process on this machine per write (from /proc, so
// run it on the database's machine, with nothing else using PostgreSQL). It
// deletes the outbox rows it wrote at the end. Example:
//
//	go run ./bench/pgfloor -db "$TEST_DATABASE_URL" -schema floorexp -mode rows
//	go run ./bench/pgfloor -db "$TEST_DATABASE_URL" -schema floorexp -mode set
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// The writer's statements (persistence/postgres/mutation.go), copied so that this
// tool measures PostgreSQL with nothing of the service in the way.
const updateRow = `WITH fenced AS (UPDATE users SET auth_id = $3, email = $4, username = $5, first_name = $6, last_name = $7,
	display_name = $8, avatar_url = $9, bio = $10, phone = $11, timezone = $12, language = $13, role = $14,
	status = $15, email_verified = $16, profile_completed = $17,
	last_active_at = GREATEST(last_active_at, $18::timestamptz), login_count = $19, last_login_at = $20,
	version = $21, updated_at = $22
	WHERE id = $1 AND version = $2 RETURNING 1) SELECT 1 / count(*) FROM fenced`

const insertOutbox = `INSERT INTO outbox (event_id, user_id, routing_key, payload, sequence) VALUES ($1, $2, $3, $4, 12)`

const updateSet = `WITH v AS (SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::uuid[], $4::text[], $5::text[], $6::text[], $7::text[],
	$8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[], $15::text[], $16::bool[], $17::bool[],
	$18::timestamptz[], $19::int[], $20::timestamptz[], $21::bigint[], $22::timestamptz[])
	AS v(id, base, auth_id, email, username, first_name, last_name, display_name, avatar_url, bio, phone, timezone, language,
	role, status, email_verified, profile_completed, last_active_at, login_count, last_login_at, version, updated_at)),
fenced AS (UPDATE users u SET auth_id = v.auth_id, email = v.email, username = v.username, first_name = v.first_name,
	last_name = v.last_name, display_name = v.display_name, avatar_url = v.avatar_url, bio = v.bio, phone = v.phone,
	timezone = v.timezone, language = v.language, role = v.role, status = v.status, email_verified = v.email_verified,
	profile_completed = v.profile_completed, last_active_at = GREATEST(u.last_active_at, v.last_active_at),
	login_count = v.login_count, last_login_at = v.last_login_at, version = v.version, updated_at = v.updated_at
	FROM v WHERE u.id = v.id AND u.version = v.base RETURNING 1)
SELECT 1 / (count(*) = $23)::int FROM fenced`

const insertOutboxSet = `INSERT INTO outbox (event_id, user_id, routing_key, payload, sequence)
SELECT e, u, k, p, 12 FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::bytea[]) WITH ORDINALITY AS t(e, u, k, p, n) ORDER BY n`

type user struct {
	id                                                                                      string
	auth, email, username, first, last, display, avatar, bio, phone, tz, lang, role, status string
	ev, pc                                                                                  bool
	lastActive                                                                              *time.Time
	logins                                                                                  int32
	lastLogin                                                                               *time.Time
	version                                                                                 int64
	created, updated                                                                        time.Time
}

// pgTicks is the user+system CPU time of every process named postgres, in clock
// ticks (100 a second on Linux).
func pgTicks() int64 {
	var total int64
	ms, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, f := range ms {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.IndexByte(s, '(')
		j := strings.LastIndexByte(s, ')')
		if i < 0 || j < 0 || s[i+1:j] != "postgres" {
			continue
		}
		fs := strings.Fields(s[j+2:])
		u, _ := strconv.ParseInt(fs[11], 10, 64)
		k, _ := strconv.ParseInt(fs[12], 10, 64)
		total += u + k
	}
	return total
}

func main() {
	dsn := flag.String("db", os.Getenv("TEST_DATABASE_URL"), "PostgreSQL URL")
	schema := flag.String("schema", "bench_head", "schema holding seeded users")
	mode := flag.String("mode", "rows", "rows: one statement per row; set: set statements")
	batch := flag.Int("batch", 13, "writes per transaction")
	conc := flag.Int("c", 4, "connections sending batches at once")
	dur := flag.Duration("d", 10*time.Second, "how long to send")
	flag.Parse()
	if *mode != "rows" && *mode != "set" {
		log.Fatalf("pgfloor: -mode must be rows or set, not %q", *mode)
	}
	ctx := context.Background()
	cfg, err := pgxpool.ParseConfig(*dsn)
	if err != nil {
		log.Fatalf("pgfloor: %v", err)
	}
	cfg.ConnConfig.RuntimeParams["search_path"] = *schema
	cfg.MaxConns = int32(*conc + 1)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		log.Fatalf("pgfloor: %v", err)
	}
	rows, err := pool.Query(ctx, `SELECT id, auth_id, email, username, coalesce(first_name,''), coalesce(last_name,''), coalesce(display_name,''), coalesce(avatar_url,''), coalesce(bio,''), coalesce(phone,''),
	coalesce(timezone,''), coalesce(language,''), role, status, email_verified, profile_completed, last_active_at, login_count,
	last_login_at, version, created_at, updated_at FROM users WHERE status = 'active' ORDER BY id LIMIT 8000`)
	if err != nil {
		log.Fatalf("pgfloor: %v", err)
	}
	var users []*user
	for rows.Next() {
		u := &user{}
		if err := rows.Scan(&u.id, &u.auth, &u.email, &u.username, &u.first, &u.last, &u.display, &u.avatar, &u.bio, &u.phone,
			&u.tz, &u.lang, &u.role, &u.status, &u.ev, &u.pc, &u.lastActive, &u.logins, &u.lastLogin, &u.version, &u.created, &u.updated); err != nil {
			log.Fatalf("pgfloor: %v", err)
		}
		users = append(users, u)
	}
	if rows.Err() != nil {
		log.Fatalf("pgfloor: %v", rows.Err())
	}
	payload := []byte(`{"eventId":"` + uuid.NewString() + `","eventType":"user.updated","timestamp":"2026-12-06T04:00:00.000Z","version":"1.0","source":"user-service","correlationId":"` + uuid.NewString() + `","sequence":12,"data":{"userId":"` + uuid.NewString() + `","changes":{"bio":"a new bio of some length for the experiment"},"user":{"id":"x","email":"someone@example.com","username":"someone","firstName":"Some","lastName":"One","role":"student","status":"active"}},"metadata":{"userVersion":12}}`)
	var done atomic.Int64
	deadline := time.Now().Add(*dur)
	t0, p0 := time.Now(), pgTicks()
	var wg sync.WaitGroup
	per := len(users) / *conc
	for g := range *conc {
		mine := users[g*per : (g+1)*per]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				pick := map[int]bool{}
				for len(pick) < *batch {
					pick[rand.IntN(len(mine))] = true
				}
				b := &pgx.Batch{}
				b.Queue("BEGIN")
				now := time.Now()
				var sel []*user
				for i := range pick {
					sel = append(sel, mine[i])
				}
				if *mode == "rows" {
					for _, u := range sel {
						u.bio = "bio " + strconv.Itoa(rand.Int())
						b.Queue(updateRow, u.id, u.version, u.auth, u.email, u.username, u.first, u.last, u.display, u.avatar, u.bio, u.phone,
							u.tz, u.lang, u.role, u.status, u.ev, u.pc, u.lastActive, u.logins, u.lastLogin, u.version+1, now)
						b.Queue(insertOutbox, uuid.NewString(), u.id, "user.updated", payload)
					}
				} else {
					n := len(sel)
					ids, auth, email, username, first, last, display, avatar, bio, phone, tz, lang, role, status :=
						make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
					base, ver := make([]int64, n), make([]int64, n)
					ev, pc := make([]bool, n), make([]bool, n)
					la, ll, up := make([]*time.Time, n), make([]*time.Time, n), make([]time.Time, n)
					lc := make([]int32, n)
					eids, keys, pays := make([]string, n), make([]string, n), make([][]byte, n)
					for i, u := range sel {
						u.bio = "bio " + strconv.Itoa(rand.Int())
						ids[i], auth[i], email[i], username[i], first[i], last[i], display[i], avatar[i], bio[i], phone[i], tz[i], lang[i], role[i], status[i] =
							u.id, u.auth, u.email, u.username, u.first, u.last, u.display, u.avatar, u.bio, u.phone, u.tz, u.lang, u.role, u.status
						base[i], ver[i], ev[i], pc[i], la[i], ll[i], up[i], lc[i] = u.version, u.version+1, u.ev, u.pc, u.lastActive, u.lastLogin, now, u.logins
						eids[i], keys[i], pays[i] = uuid.NewString(), "user.updated", payload
					}
					b.Queue(updateSet, ids, base, auth, email, username, first, last, display, avatar, bio, phone, tz, lang, role, status, ev, pc, la, lc, ll, ver, up, n)
					b.Queue(insertOutboxSet, eids, ids, keys, pays)
				}
				b.Queue("COMMIT")
				if err := pool.SendBatch(ctx, b).Close(); err != nil {
					log.Fatalf("pgfloor: batch: %v", err)
				}
				for _, u := range sel {
					u.version++
				}
				done.Add(int64(len(sel)))
			}
		}()
	}
	wg.Wait()
	wall := time.Since(t0).Seconds()
	pg := float64(pgTicks()-p0) / 100
	n := float64(done.Load())
	fmt.Printf("mode=%s batch=%d c=%d writes/s=%.0f pg_cores=%.2f pg_ms_per_write=%.4f\n", *mode, *batch, *conc, n/wall, pg/wall, pg/n*1000)
	if _, err := pool.Exec(ctx, `DELETE FROM outbox`); err != nil {
		log.Fatalf("pgfloor: cannot delete the outbox rows: %v", err)
	}
}
