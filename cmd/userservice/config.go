package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"mime"
	"net"
	"net/netip"
	"net/url"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	// caarlos0/env: well kept, no dependencies, one struct with `env`/`envDefault`
	// tags reads as the list of every variable and its default, it parses ints, bools,
	// durations, lists and encoding.TextUnmarshaler types, it takes the environment as
	// a map (so run's getenv feeds it, not the process), and its errors name the field,
	// which configVars maps back to the variable.
	"github.com/caarlos0/env/v11"

	userservice "github.com/lms-platform/userservice"
	httpapi "github.com/lms-platform/userservice/http"
)

// Config is every setting of the service, read from the environment by [LoadConfig].
// The names and defaults are the spec's "Configuration Management" section
// (CONTRACT.md, Configuration); the ACTOR_*, WRITE_BATCH_*, SHUTDOWN_TIMEOUT and
// REQUEST_TIMEOUT knobs are this rebuild's. Field names are unique across the
// struct: a parse error names the Go field, and configVars maps it back to the
// variable. A field tagged redact is kept out of [Config.Redacted].
type Config struct {
	// Server.
	Port    int    `env:"PORT" envDefault:"3002"`
	NodeEnv string `env:"NODE_ENV" envDefault:"development"`
	Host    string `env:"HOST" envDefault:"0.0.0.0"`

	// PostgreSQL. Use [Config.DatabaseURL], which picks DATABASE_URL or the DB_* parts.
	DatabaseURLEnv string `env:"DATABASE_URL" envDefault:"postgresql://lms_user:lms_password@localhost:5432/lms_users" redact:"url"`
	DBHost         string `env:"DB_HOST" envDefault:"localhost"`
	DBPort         int    `env:"DB_PORT" envDefault:"5432"`
	DBName         string `env:"DB_NAME" envDefault:"lms_users"`
	DBUser         string `env:"DB_USER" envDefault:"lms_user"`
	DBPassword     string `env:"DB_PASSWORD" envDefault:"lms_password" redact:"secret"`
	DBSSL          bool   `env:"DB_SSL" envDefault:"false"`
	DBPoolMin      int    `env:"DB_POOL_MIN" envDefault:"2"`
	DBPoolMax      int    `env:"DB_POOL_MAX" envDefault:"10"`

	// Redis. Use [Config.RedisURL] or [Config.RedisAddr].
	RedisURLEnv    string `env:"REDIS_URL" envDefault:"redis://localhost:6379" redact:"url"`
	RedisHost      string `env:"REDIS_HOST" envDefault:"localhost"`
	RedisPort      int    `env:"REDIS_PORT" envDefault:"6379"`
	RedisPassword  string `env:"REDIS_PASSWORD" redact:"secret"`
	RedisDB        int    `env:"REDIS_DB" envDefault:"0"`
	RedisKeyPrefix string `env:"REDIS_KEY_PREFIX" envDefault:"user-service:"`

	// RabbitMQ. Use [Config.RabbitURL].
	RabbitMQURLEnv   string `env:"RABBITMQ_URL" envDefault:"amqp://localhost:5672" redact:"url"`
	RabbitMQHost     string `env:"RABBITMQ_HOST" envDefault:"localhost"`
	RabbitMQPort     int    `env:"RABBITMQ_PORT" envDefault:"5672"`
	RabbitMQUsername string `env:"RABBITMQ_USERNAME" envDefault:"guest"`
	RabbitMQPassword string `env:"RABBITMQ_PASSWORD" envDefault:"guest" redact:"secret"`
	RabbitMQVHost    string `env:"RABBITMQ_VHOST" envDefault:"/"`
	RabbitMQExchange string `env:"RABBITMQ_EXCHANGE" envDefault:"lms.events"`
	RabbitMQQueue    string `env:"RABBITMQ_QUEUE" envDefault:"user-service.events"`

	// JWT. The default secret is the spec's placeholder: fine for development,
	// refused in production.
	JWTSecret           string   `env:"JWT_SECRET" envDefault:"your-super-secret-jwt-key-change-in-production" redact:"secret"`
	JWTExpiresIn        Lifetime `env:"JWT_EXPIRES_IN" envDefault:"24h"`
	JWTRefreshExpiresIn Lifetime `env:"JWT_REFRESH_EXPIRES_IN" envDefault:"7d"`
	// JWT_ALGORITHMS: HS256 (JWT_SECRET), RS256 and ES256 (JWT_PUBLIC_KEY, a PEM
	// public key or certificate, or JWT_JWKS_URL). Use [Config.JWTKey] for the key.
	JWTAlgorithms []string `env:"JWT_ALGORITHMS" envDefault:"HS256"`
	JWTPublicKey  string   `env:"JWT_PUBLIC_KEY"`
	JWTJWKSURL    string   `env:"JWT_JWKS_URL" redact:"url"`
	// JWT_JWKS_REFRESH_INTERVAL: how often the JWKS is refetched (a withdrawn key
	// stops passing within it); a token naming an unknown kid refetches sooner.
	JWTJWKSRefreshInterval time.Duration `env:"JWT_JWKS_REFRESH_INTERVAL" envDefault:"10m"`

	// External services.
	AuthServiceURL      string `env:"AUTH_SERVICE_URL" envDefault:"http://localhost:3001" redact:"url"`
	CourseServiceURL    string `env:"COURSE_SERVICE_URL" envDefault:"http://localhost:3003" redact:"url"`
	AnalyticsServiceURL string `env:"ANALYTICS_SERVICE_URL" envDefault:"http://localhost:3004" redact:"url"`
	EmailServiceURL     string `env:"EMAIL_SERVICE_URL" envDefault:"http://localhost:3005" redact:"url"`

	// Rate limiting: RATE_LIMIT_MAX requests per RATE_LIMIT_WINDOW (milliseconds).
	RateLimitMax            int    `env:"RATE_LIMIT_MAX" envDefault:"100"`
	RateLimitWindow         Millis `env:"RATE_LIMIT_WINDOW" envDefault:"60000"`
	RateLimitSkipSuccessful bool   `env:"RATE_LIMIT_SKIP_SUCCESSFUL" envDefault:"false"`
	// Share of a caller's remaining quota one process leases from Redis at a time
	// (persistence/redis RateLimiter); 0: one round trip per request.
	RateLimitLeaseFraction float64 `env:"RATE_LIMIT_LEASE_FRACTION" envDefault:"0.01"`

	// CORS. Lists are comma-separated; CORS_ORIGIN may be "*".
	CORSOrigin         []string `env:"CORS_ORIGIN" envDefault:"http://localhost:3000"`
	CORSCredentials    bool     `env:"CORS_CREDENTIALS" envDefault:"true"`
	CORSMethods        []string `env:"CORS_METHODS" envDefault:"GET,POST,PUT,PATCH,DELETE,OPTIONS"`
	CORSAllowedHeaders []string `env:"CORS_ALLOWED_HEADERS" envDefault:"Content-Type,Authorization,X-Requested-With"`

	// Security. TRUST_PROXY lists the proxies (CIDRs or addresses) whose
	// X-Forwarded-For names the client; empty or "false": none. Use
	// [Config.TrustedProxies].
	HelmetEnabled bool     `env:"HELMET_ENABLED" envDefault:"true"`
	TrustProxy    []string `env:"TRUST_PROXY"`
	BcryptRounds  int      `env:"BCRYPT_ROUNDS" envDefault:"12"`

	// Logging. LOG_LEVEL also takes winston's http, verbose and silly (all debug).
	LogLevel       string `env:"LOG_LEVEL" envDefault:"info"`
	LogFormat      string `env:"LOG_FORMAT" envDefault:"json"`
	LogFileEnabled bool   `env:"LOG_FILE_ENABLED" envDefault:"false"`
	LogFilePath    string `env:"LOG_FILE_PATH" envDefault:"./logs/user-service.log"`

	// Cache lifetimes (seconds).
	CacheTTLUserProfile     Seconds `env:"CACHE_TTL_USER_PROFILE" envDefault:"900"`
	CacheTTLUserPreferences Seconds `env:"CACHE_TTL_USER_PREFERENCES" envDefault:"1800"`
	CacheTTLUserEnrollments Seconds `env:"CACHE_TTL_USER_ENROLLMENTS" envDefault:"300"`
	CacheTTLUserSearch      Seconds `env:"CACHE_TTL_USER_SEARCH" envDefault:"120"`

	// EventRetention is how long published events stay readable through the
	// change feed (issue 15).
	EventRetention Lifetime `env:"EVENT_RETENTION" envDefault:"7d"`

	// ErasureCoolOff is how long after POST …/erasure the erasure runs, unless
	// cancelled (issue 14).
	ErasureCoolOff Lifetime `env:"ERASURE_COOL_OFF" envDefault:"7d"`

	// Retention (issue 14): how long rows are kept; 0 (e.g. 0d) keeps them
	// forever. A soft-deleted user is erased DeletedUserRetention after its last
	// change; the others are deleted by the retention job every
	// RetentionInterval, RetentionBatchSize rows at a time, on one node.
	DeletedUserRetention      Lifetime `env:"DELETED_USER_RETENTION" envDefault:"30d"`
	SessionRetention          Lifetime `env:"SESSION_RETENTION" envDefault:"90d"`
	IdempotencyRetention      Lifetime `env:"IDEMPOTENCY_RETENTION" envDefault:"24h"`
	ProcessedMessageRetention Lifetime `env:"PROCESSED_MESSAGE_RETENTION" envDefault:"7d"`
	AuditRetention            Lifetime `env:"AUDIT_RETENTION" envDefault:"730d"`
	RetentionInterval         Lifetime `env:"RETENTION_INTERVAL" envDefault:"1h"`
	RetentionBatchSize        int      `env:"RETENTION_BATCH_SIZE" envDefault:"1000"`

	// Pagination.
	DefaultPageSize int `env:"DEFAULT_PAGE_SIZE" envDefault:"20"`
	MaxPageSize     int `env:"MAX_PAGE_SIZE" envDefault:"100"`

	// File upload.
	MaxFileSize      int64    `env:"MAX_FILE_SIZE" envDefault:"5242880"`
	AllowedFileTypes []string `env:"ALLOWED_FILE_TYPES" envDefault:"image/jpeg,image/png,image/gif,image/webp"`

	// Health checks (milliseconds).
	HealthCheckTimeout  Millis `env:"HEALTH_CHECK_TIMEOUT" envDefault:"5000"`
	HealthCheckInterval Millis `env:"HEALTH_CHECK_INTERVAL" envDefault:"30000"`

	// Metrics.
	MetricsEnabled bool   `env:"METRICS_ENABLED" envDefault:"true"`
	MetricsPort    int    `env:"METRICS_PORT" envDefault:"9090"`
	MetricsPath    string `env:"METRICS_PATH" envDefault:"/metrics"`

	// Feature flags. Off: ENABLE_USER_REGISTRATION ignores auth.user.registered
	// (admins still create users); ENABLE_SESSION_TRACKING counts logins without
	// keeping sessions and ignores logouts. The other three name things this
	// service does not switch: profile completion and enrollment stats are API
	// answers of the contract, and preferences always live in the user's actor
	// (the actor is the cache); they are parsed and validated, with no effect.
	EnableUserRegistration          bool `env:"ENABLE_USER_REGISTRATION" envDefault:"true"`
	EnableProfileCompletionTracking bool `env:"ENABLE_PROFILE_COMPLETION_TRACKING" envDefault:"true"`
	EnableEnrollmentAnalytics       bool `env:"ENABLE_ENROLLMENT_ANALYTICS" envDefault:"true"`
	EnablePreferenceCaching         bool `env:"ENABLE_PREFERENCE_CACHING" envDefault:"true"`
	EnableSessionTracking           bool `env:"ENABLE_SESSION_TRACKING" envDefault:"true"`

	// Audit. AUDIT_ENABLED=false stores no audit records (the changes and their
	// events are unaffected).
	AuditEnabled         bool     `env:"AUDIT_ENABLED" envDefault:"true"`
	AuditSensitiveFields []string `env:"AUDIT_SENSITIVE_FIELDS" envDefault:"password,email,phone"`

	// This rebuild's knobs (CONTRACT.md, Configuration), as Go durations ("10m", "2ms").
	ActorIdleTimeout time.Duration `env:"ACTOR_IDLE_TIMEOUT" envDefault:"10m"`
	ActorMaxActive   int           `env:"ACTOR_MAX_ACTIVE" envDefault:"100000"`
	WriteBatchMax    int           `env:"WRITE_BATCH_MAX" envDefault:"256"`
	WriteBatchWait   time.Duration `env:"WRITE_BATCH_WAIT" envDefault:"0s"`
	ShutdownTimeout  time.Duration `env:"SHUTDOWN_TIMEOUT" envDefault:"20s"`
	RequestTimeout   time.Duration `env:"REQUEST_TIMEOUT" envDefault:"10s"`
	// A user's Redis snapshot is written at most once per SNAPSHOT_WRITE_DELAY, and at
	// passivation (issue 16); 0 writes after every commit.
	SnapshotWriteDelay time.Duration `env:"SNAPSHOT_WRITE_DELAY" envDefault:"30s"`
	// The heap floor in MiB (issue 16, heapfloor.go): the garbage collector lets the
	// heap grow to at least this before collecting; 0 leaves GOGC alone.
	GCHeapFloorMB int `env:"GC_HEAP_FLOOR_MB" envDefault:"512"`
	// Verified tokens kept in memory, and as many authId → profile id answers
	// (http.Config.TokenCacheSize): a request whose token is not held verifies
	// its signature again.
	TokenCacheSize int `env:"TOKEN_CACHE_SIZE" envDefault:"10000"`

	// Connection limits (issue 11): connections served at once, per client IP
	// (0 = no per-IP limit; behind a load balancer every client shares its IP),
	// how long an idle keep-alive connection is kept, and how long a health
	// check's result is shared between probes.
	HTTPMaxConns      int           `env:"HTTP_MAX_CONNS" envDefault:"10000"`
	HTTPMaxConnsPerIP int           `env:"HTTP_MAX_CONNS_PER_IP" envDefault:"0"`
	HTTPIdleTimeout   time.Duration `env:"HTTP_IDLE_TIMEOUT" envDefault:"120s"`
	HealthCacheTTL    time.Duration `env:"HEALTH_CACHE_TTL" envDefault:"1s"`

	// Per-user quotas (issue 11; 0 = no limit): preference keys, their bytes (keys
	// plus compact JSON values) and enrollments one user may hold.
	QuotaPreferencesPerUser     int `env:"QUOTA_PREFERENCES_PER_USER" envDefault:"500"`
	QuotaPreferenceBytesPerUser int `env:"QUOTA_PREFERENCE_BYTES_PER_USER" envDefault:"262144"`
	QuotaEnrollmentsPerUser     int `env:"QUOTA_ENROLLMENTS_PER_USER" envDefault:"5000"`
	QuotaSessionsPerUser        int `env:"QUOTA_SESSIONS_PER_USER" envDefault:"100"`

	// Bulk jobs (issue 15): items applied at once and per second by the worker
	// (negative JOB_ITEMS_PER_SECOND: no bound), and the items of one job.
	JobConcurrency    int     `env:"JOB_CONCURRENCY" envDefault:"2"`
	JobItemsPerSecond float64 `env:"JOB_ITEMS_PER_SECOND" envDefault:"50"`
	JobMaxItems       int     `env:"JOB_MAX_ITEMS" envDefault:"100000"`

	// Cluster mode (docs/cluster.md). CLUSTER_PROVIDER=none is single-node mode.
	// Remoting binds exactly CLUSTER_ADVERTISE_HOST:CLUSTER_PORT.
	ClusterProvider      string        `env:"CLUSTER_PROVIDER" envDefault:"none"`
	ClusterName          string        `env:"CLUSTER_NAME" envDefault:"userservice"`
	ClusterAdvertiseHost string        `env:"CLUSTER_ADVERTISE_HOST" envDefault:"127.0.0.1"`
	ClusterPort          int           `env:"CLUSTER_PORT" envDefault:"8090"`
	EtcdEndpoints        []string      `env:"ETCD_ENDPOINTS" envDefault:"127.0.0.1:2379"`
	ClusterLeaseTTL      time.Duration `env:"CLUSTER_LEASE_TTL" envDefault:"5s"`
	// CLUSTER_PROVIDER=k8s: this node's Pod, from the downward API (metadata.name,
	// metadata.namespace). Empty: the host name and the service account's
	// namespace file, which is what a Pod sees by default.
	PodName      string `env:"POD_NAME"`
	PodNamespace string `env:"POD_NAMESPACE"`

	// The connection URL is built from the parts when the environment gave parts but
	// no URL (LoadConfig decides; see DatabaseURL).
	dbFromParts, redisFromParts, rabbitFromParts bool
}

// CLUSTER_PROVIDER values.
const (
	clusterNone = "none"
	clusterEtcd = "etcd"
	clusterK8s  = "k8s"
)

// kubeLabelValue reports whether s is a valid Kubernetes label value (non-empty).
func kubeLabelValue(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for i, r := range s {
		alnum := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
		if !alnum && (i == 0 || i == len(s)-1 || !strings.ContainsRune("-_.", r)) {
			return false
		}
	}
	return true
}

// defaultJWTSecret is the spec's placeholder; anyone can read it, so production refuses it.
const defaultJWTSecret = "your-super-secret-jwt-key-change-in-production"

// ConfigProblem is one bad setting: the variable and what is wrong with it.
type ConfigProblem struct {
	Var     string
	Message string
}

// ConfigError lists every problem of a configuration, each naming its variable.
type ConfigError struct {
	Problems []ConfigProblem
}

func (e *ConfigError) Error() string {
	var b strings.Builder
	b.WriteString("invalid configuration: ")
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(p.Var)
		b.WriteString(": ")
		b.WriteString(p.Message)
	}
	return b.String()
}

// LoadConfig reads the configuration through getenv (os.Getenv in production, a map
// in tests), applies the spec's defaults and validates it. A variable set to "" counts
// as unset. Unknown variables are ignored. The error, a *ConfigError, lists every
// problem, parse errors and failed checks alike, each naming its variable.
func LoadConfig(getenv func(string) string) (Config, error) {
	vars := configVars()
	environment := make(map[string]string, len(vars)) // non-nil: the process env stays out
	for _, v := range vars {
		if s := getenv(v.name); s != "" {
			environment[v.name] = s
		}
	}
	var c Config
	var problems []ConfigProblem
	if err := env.ParseWithOptions(&c, env.Options{Environment: environment}); err != nil {
		problems = parseProblems(err, vars, environment)
	}
	c.normalize()
	// The spec defaults both a URL and its parts. A URL in the environment wins; parts
	// in the environment without their URL build it; with neither, the URL's default.
	given := func(names ...string) bool {
		for _, n := range names {
			if environment[n] != "" {
				return true
			}
		}
		return false
	}
	c.dbFromParts = !given("DATABASE_URL") && given("DB_HOST", "DB_PORT", "DB_NAME", "DB_USER", "DB_PASSWORD", "DB_SSL")
	c.redisFromParts = !given("REDIS_URL") && given("REDIS_HOST", "REDIS_PORT", "REDIS_PASSWORD", "REDIS_DB")
	c.rabbitFromParts = !given("RABBITMQ_URL") &&
		given("RABBITMQ_HOST", "RABBITMQ_PORT", "RABBITMQ_USERNAME", "RABBITMQ_PASSWORD", "RABBITMQ_VHOST")

	// A variable that did not parse holds its zero value; its range check would only
	// repeat the parse problem.
	bad := map[string]bool{}
	for _, p := range problems {
		bad[p.Var] = true
	}
	var ce *ConfigError
	if err := c.Validate(); errors.As(err, &ce) {
		for _, p := range ce.Problems {
			if !bad[p.Var] {
				problems = append(problems, p)
			}
		}
	}
	if len(problems) > 0 {
		return Config{}, &ConfigError{Problems: problems}
	}
	return c, nil
}

// normalize trims list items (dropping empty ones) and lower-cases the enumerations
// that are case-insensitive.
func (c *Config) normalize() {
	for _, l := range []*[]string{&c.JWTAlgorithms, &c.TrustProxy, &c.CORSOrigin, &c.CORSMethods, &c.CORSAllowedHeaders, &c.AllowedFileTypes, &c.AuditSensitiveFields} {
		out := (*l)[:0]
		for _, s := range *l {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
		*l = out
	}
	for i, m := range c.CORSMethods {
		c.CORSMethods[i] = strings.ToUpper(m)
	}
	for i, a := range c.JWTAlgorithms {
		c.JWTAlgorithms[i] = strings.ToUpper(a)
	}
	c.LogLevel = strings.ToLower(strings.TrimSpace(c.LogLevel))
	c.LogFormat = strings.ToLower(strings.TrimSpace(c.LogFormat))
}

// configVar is one tagged field of Config.
type configVar struct {
	field, name string // Go field name, environment variable
	redact      string // "", "secret" or "url"
}

// configVars lists Config's variables in declaration order.
func configVars() []configVar {
	t := reflect.TypeOf(Config{})
	out := make([]configVar, 0, t.NumField())
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("env"), ",")
		if name == "" || name == "-" {
			continue
		}
		out = append(out, configVar{field: f.Name, name: name, redact: f.Tag.Get("redact")})
	}
	return out
}

// parseProblems turns the env library's aggregate error into problems naming the
// variable rather than the Go field.
func parseProblems(err error, vars []configVar, environment map[string]string) []ConfigProblem {
	byField := make(map[string]configVar, len(vars))
	for _, v := range vars {
		byField[v.field] = v
	}
	var errs []error
	var agg env.AggregateError
	if errors.As(err, &agg) {
		errs = agg.Errors
	} else {
		errs = []error{err}
	}
	var out []ConfigProblem
	for _, e := range errs {
		var pe env.ParseError
		if !errors.As(e, &pe) {
			out = append(out, ConfigProblem{Var: "configuration", Message: e.Error()})
			continue
		}
		v := byField[pe.Name]
		msg := parseMessage(pe)
		if v.redact != "secret" {
			msg += fmt.Sprintf(" (got %q)", clip(environment[v.name], 40))
		}
		out = append(out, ConfigProblem{Var: v.name, Message: msg})
	}
	return out
}

func parseMessage(pe env.ParseError) string {
	var ve valueError
	if errors.As(pe.Err, &ve) {
		return string(ve)
	}
	if pe.Type == reflect.TypeOf(time.Duration(0)) {
		return "must be a duration such as 10m, 2ms or 1h30m"
	}
	switch pe.Type.Kind() {
	case reflect.Bool:
		return "must be true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		var ne *strconv.NumError
		if errors.As(pe.Err, &ne) && errors.Is(ne.Err, strconv.ErrRange) {
			return "is out of range"
		}
		return "must be an integer"
	}
	return pe.Err.Error()
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// valueError is the message of a custom type's parse error, shown as is.
type valueError string

func (e valueError) Error() string { return string(e) }

// Millis is a duration given as an integer number of milliseconds
// (RATE_LIMIT_WINDOW, HEALTH_CHECK_*).
type Millis time.Duration

// UnmarshalText implements encoding.TextUnmarshaler.
func (m *Millis) UnmarshalText(b []byte) error {
	d, err := parseUnits(string(b), time.Millisecond, "milliseconds")
	*m = Millis(d)
	return err
}

// Duration returns m as a time.Duration.
func (m Millis) Duration() time.Duration { return time.Duration(m) }

// String returns the number of milliseconds, as the variable takes it.
func (m Millis) String() string { return strconv.FormatInt(time.Duration(m).Milliseconds(), 10) }

// Seconds is a duration given as an integer number of seconds (CACHE_TTL_*).
type Seconds time.Duration

// UnmarshalText implements encoding.TextUnmarshaler.
func (s *Seconds) UnmarshalText(b []byte) error {
	d, err := parseUnits(string(b), time.Second, "seconds")
	*s = Seconds(d)
	return err
}

// Duration returns s as a time.Duration.
func (s Seconds) Duration() time.Duration { return time.Duration(s) }

// String returns the number of seconds, as the variable takes it.
func (s Seconds) String() string { return strconv.FormatInt(int64(time.Duration(s)/time.Second), 10) }

func parseUnits(s string, unit time.Duration, name string) (time.Duration, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n > math.MaxInt64/int64(unit) || n < math.MinInt64/int64(unit) {
		return 0, valueError("must be an integer number of " + name)
	}
	return time.Duration(n) * unit, nil
}

// Lifetime is a token lifetime in the notation of the spec's JWT_EXPIRES_IN: a Go
// duration that may also use days and weeks ("24h", "7d", "1d12h", "2w"). A bare
// number is refused: jsonwebtoken would read "3600" as milliseconds, a trap.
type Lifetime time.Duration

// UnmarshalText implements encoding.TextUnmarshaler.
func (l *Lifetime) UnmarshalText(b []byte) error {
	d, err := ParseLifetime(string(b))
	*l = Lifetime(d)
	return err
}

// ParseLifetime parses the [Lifetime] notation: one or more number-unit pairs, the
// number possibly fractional, the unit ms, s, m, h, d or w.
func ParseLifetime(s string) (time.Duration, error) {
	const bad = valueError("must be a duration such as 24h, 7d or 1d12h")
	if s == "" || len(s) > 64 {
		return 0, bad
	}
	var total float64
	for s != "" {
		i := 0
		for i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '.') {
			i++
		}
		n, err := strconv.ParseFloat(s[:i], 64)
		if i == 0 || err != nil || s[0] == '.' || s[i-1] == '.' {
			return 0, bad
		}
		s = s[i:]
		var unit time.Duration
		switch {
		case strings.HasPrefix(s, "ms"):
			unit, s = time.Millisecond, s[2:]
		case s == "":
			return 0, valueError("must have a unit (ms, s, m, h, d or w), such as 24h or 7d")
		default:
			switch s[0] {
			case 's':
				unit = time.Second
			case 'm':
				unit = time.Minute
			case 'h':
				unit = time.Hour
			case 'd':
				unit = 24 * time.Hour
			case 'w':
				unit = 7 * 24 * time.Hour
			default:
				return 0, bad
			}
			s = s[1:]
		}
		total += n * float64(unit)
	}
	if total >= math.MaxInt64 {
		return 0, valueError("is out of range")
	}
	return time.Duration(total), nil
}

// Duration returns l as a time.Duration.
func (l Lifetime) Duration() time.Duration { return time.Duration(l) }

// String formats l in days when it is a whole number of days, else as a Go duration.
func (l Lifetime) String() string {
	d := time.Duration(l)
	if day := 24 * time.Hour; d > 0 && d%day == 0 {
		return strconv.FormatInt(int64(d/day), 10) + "d"
	}
	return d.String()
}

// Validate checks every setting and returns a *ConfigError listing every problem,
// or nil.
func (c Config) Validate() error {
	var p []ConfigProblem
	add := func(name, msg string) { p = append(p, ConfigProblem{Var: name, Message: msg}) }
	port := func(name string, v int) {
		if v < 1 || v > 65535 {
			add(name, "must be 1-65535")
		}
	}
	nonEmpty := func(name, v string) {
		if strings.TrimSpace(v) == "" {
			add(name, "must not be empty")
		}
	}
	positive := func(name string, d time.Duration) {
		if d <= 0 {
			add(name, "must be greater than 0")
		}
	}
	urlScheme := func(name, v string, schemes ...string) {
		u, err := url.Parse(v)
		switch {
		case err != nil:
			add(name, "must be a URL")
		case !contains(schemes, strings.ToLower(u.Scheme)):
			add(name, "must be a URL with scheme "+strings.Join(schemes, " or "))
		case u.Host == "" && !strings.HasPrefix(u.Scheme, "postgres"): // postgres allows a socket in ?host=
			add(name, "must name a host")
		}
	}

	port("PORT", c.Port)
	if !contains([]string{"development", "production", "test"}, c.NodeEnv) {
		add("NODE_ENV", "must be development, production or test")
	}
	nonEmpty("HOST", c.Host)

	urlScheme("DATABASE_URL", c.DatabaseURLEnv, "postgres", "postgresql")
	nonEmpty("DB_HOST", c.DBHost)
	port("DB_PORT", c.DBPort)
	nonEmpty("DB_NAME", c.DBName)
	nonEmpty("DB_USER", c.DBUser)
	if c.DBPoolMin < 0 {
		add("DB_POOL_MIN", "must be at least 0")
	}
	if c.DBPoolMax < 1 {
		add("DB_POOL_MAX", "must be at least 1")
	} else if c.DBPoolMin > c.DBPoolMax {
		add("DB_POOL_MIN", "must not exceed DB_POOL_MAX")
	}

	urlScheme("REDIS_URL", c.RedisURLEnv, "redis", "rediss")
	nonEmpty("REDIS_HOST", c.RedisHost)
	port("REDIS_PORT", c.RedisPort)
	if c.RedisDB < 0 {
		add("REDIS_DB", "must be at least 0")
	}

	urlScheme("RABBITMQ_URL", c.RabbitMQURLEnv, "amqp", "amqps")
	nonEmpty("RABBITMQ_HOST", c.RabbitMQHost)
	port("RABBITMQ_PORT", c.RabbitMQPort)
	nonEmpty("RABBITMQ_VHOST", c.RabbitMQVHost)
	nonEmpty("RABBITMQ_EXCHANGE", c.RabbitMQExchange)
	nonEmpty("RABBITMQ_QUEUE", c.RabbitMQQueue)

	c.validateJWT(add)
	positive("JWT_EXPIRES_IN", time.Duration(c.JWTExpiresIn))
	positive("EVENT_RETENTION", c.EventRetention.Duration())
	positive("ERASURE_COOL_OFF", c.ErasureCoolOff.Duration())
	if c.IdempotencyRetention.Duration() < 24*time.Hour {
		add("IDEMPOTENCY_RETENTION", "must be at least 24h (an Idempotency-Key is honoured for 24 h)")
	}
	positive("RETENTION_INTERVAL", c.RetentionInterval.Duration())
	if c.RetentionBatchSize < 1 || c.RetentionBatchSize > 100000 {
		add("RETENTION_BATCH_SIZE", "must be 1-100000")
	}
	positive("JWT_REFRESH_EXPIRES_IN", time.Duration(c.JWTRefreshExpiresIn))

	for _, s := range []struct{ name, v string }{
		{"AUTH_SERVICE_URL", c.AuthServiceURL}, {"COURSE_SERVICE_URL", c.CourseServiceURL},
		{"ANALYTICS_SERVICE_URL", c.AnalyticsServiceURL}, {"EMAIL_SERVICE_URL", c.EmailServiceURL},
	} {
		urlScheme(s.name, s.v, "http", "https")
	}

	if c.RateLimitMax < 1 {
		add("RATE_LIMIT_MAX", "must be greater than 0")
	}
	positive("RATE_LIMIT_WINDOW", c.RateLimitWindow.Duration())
	if c.RateLimitLeaseFraction < 0 || c.RateLimitLeaseFraction > 1 {
		add("RATE_LIMIT_LEASE_FRACTION", "must be between 0 and 1")
	}

	if len(c.CORSOrigin) == 0 {
		add("CORS_ORIGIN", "must not be empty")
	}
	for _, o := range c.CORSOrigin {
		if o == "*" {
			continue
		}
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
			add("CORS_ORIGIN", fmt.Sprintf("%q is not * or an origin such as https://app.example.com", clip(o, 40)))
		}
	}
	for _, m := range c.CORSMethods {
		if !contains([]string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}, m) {
			add("CORS_METHODS", fmt.Sprintf("%q is not an HTTP method", clip(m, 40)))
		}
	}
	for _, h := range c.CORSAllowedHeaders {
		if !headerToken(h) {
			add("CORS_ALLOWED_HEADERS", fmt.Sprintf("%q is not a header name", clip(h, 40)))
		}
	}

	if _, err := c.TrustedProxies(); err != nil {
		add("TRUST_PROXY", err.Error())
	}

	if c.BcryptRounds < 4 || c.BcryptRounds > 31 {
		add("BCRYPT_ROUNDS", "must be 4-31")
	}

	if _, ok := logLevel(c.LogLevel); !ok {
		add("LOG_LEVEL", "must be error, warn, info or debug (or winston's http, verbose, silly)")
	}
	if c.LogFormat != "json" && c.LogFormat != "text" {
		add("LOG_FORMAT", "must be json or text")
	}
	if c.LogFileEnabled {
		nonEmpty("LOG_FILE_PATH", c.LogFilePath)
	}

	positive("CACHE_TTL_USER_PROFILE", c.CacheTTLUserProfile.Duration())
	positive("CACHE_TTL_USER_PREFERENCES", c.CacheTTLUserPreferences.Duration())
	positive("CACHE_TTL_USER_ENROLLMENTS", c.CacheTTLUserEnrollments.Duration())
	positive("CACHE_TTL_USER_SEARCH", c.CacheTTLUserSearch.Duration())

	switch {
	case c.MaxPageSize < 1 || c.MaxPageSize > 100: // CONTRACT.md: limit ≤ 100
		add("MAX_PAGE_SIZE", "must be 1-100")
	case c.DefaultPageSize > c.MaxPageSize:
		add("DEFAULT_PAGE_SIZE", "must not exceed MAX_PAGE_SIZE")
	}
	if c.DefaultPageSize < 1 {
		add("DEFAULT_PAGE_SIZE", "must be at least 1")
	}

	if c.MaxFileSize < 1 {
		add("MAX_FILE_SIZE", "must be greater than 0")
	}
	for _, t := range c.AllowedFileTypes {
		if mt, _, err := mime.ParseMediaType(t); err != nil || !strings.Contains(mt, "/") {
			add("ALLOWED_FILE_TYPES", fmt.Sprintf("%q is not a media type such as image/png", clip(t, 40)))
		}
	}

	positive("HEALTH_CHECK_TIMEOUT", c.HealthCheckTimeout.Duration())
	positive("HEALTH_CHECK_INTERVAL", c.HealthCheckInterval.Duration())

	port("METRICS_PORT", c.MetricsPort)
	if !strings.HasPrefix(c.MetricsPath, "/") || strings.ContainsAny(c.MetricsPath, " ?#") {
		add("METRICS_PATH", "must be a path starting with /")
	}

	positive("ACTOR_IDLE_TIMEOUT", c.ActorIdleTimeout)
	if c.ActorMaxActive < 1 {
		add("ACTOR_MAX_ACTIVE", "must be at least 1")
	}
	if c.WriteBatchMax < 1 || c.WriteBatchMax > 10000 {
		add("WRITE_BATCH_MAX", "must be 1-10000")
	}
	if c.WriteBatchWait < 0 || c.WriteBatchWait > time.Second {
		add("WRITE_BATCH_WAIT", "must be 0-1s")
	}
	positive("SHUTDOWN_TIMEOUT", c.ShutdownTimeout)
	positive("REQUEST_TIMEOUT", c.RequestTimeout)
	if c.SnapshotWriteDelay < 0 || c.SnapshotWriteDelay > time.Hour {
		add("SNAPSHOT_WRITE_DELAY", "must be 0-1h")
	}
	if c.GCHeapFloorMB < 0 || c.GCHeapFloorMB > 1<<20 {
		add("GC_HEAP_FLOOR_MB", "must be 0 (off) to 1048576 (MiB)")
	}
	if c.TokenCacheSize < 1 || c.TokenCacheSize > 10_000_000 {
		add("TOKEN_CACHE_SIZE", "must be 1-10000000")
	}
	if c.JobConcurrency < 1 || c.JobConcurrency > 256 {
		add("JOB_CONCURRENCY", "must be 1-256")
	}
	if c.JobItemsPerSecond == 0 || math.IsNaN(c.JobItemsPerSecond) || math.IsInf(c.JobItemsPerSecond, 0) {
		add("JOB_ITEMS_PER_SECOND", "must be a positive number (items a second), or negative for no bound")
	}
	if c.JobMaxItems < 1 || c.JobMaxItems > 10_000_000 {
		add("JOB_MAX_ITEMS", "must be 1-10000000")
	}
	if c.HTTPMaxConns < 1 {
		add("HTTP_MAX_CONNS", "must be at least 1")
	}
	if c.HTTPMaxConnsPerIP < 0 {
		add("HTTP_MAX_CONNS_PER_IP", "must be 0 (no limit) or more")
	}
	positive("HTTP_IDLE_TIMEOUT", c.HTTPIdleTimeout)
	if c.HealthCacheTTL < 0 || c.HealthCacheTTL > time.Minute {
		add("HEALTH_CACHE_TTL", "must be 0-1m")
	}
	for name, v := range map[string]int{"QUOTA_PREFERENCES_PER_USER": c.QuotaPreferencesPerUser,
		"QUOTA_PREFERENCE_BYTES_PER_USER": c.QuotaPreferenceBytesPerUser, "QUOTA_ENROLLMENTS_PER_USER": c.QuotaEnrollmentsPerUser} {
		if v < 0 {
			add(name, "must be 0 (no limit) or more")
		}
	}
	if c.QuotaSessionsPerUser < 0 || c.QuotaSessionsPerUser > userservice.MaxSessionsKept {
		add("QUOTA_SESSIONS_PER_USER", fmt.Sprintf("must be 0 (no limit) to %d", userservice.MaxSessionsKept))
	}

	switch c.ClusterProvider {
	case clusterNone:
	case clusterEtcd, clusterK8s:
		if c.ClusterName == "" || strings.ContainsAny(c.ClusterName, "/ ") {
			add("CLUSTER_NAME", "must be a non-empty name without / or spaces")
		} else if c.ClusterProvider == clusterK8s && !kubeLabelValue(c.ClusterName) {
			// It is a label value on the Pods and the Leases.
			add("CLUSTER_NAME", "must be a Kubernetes label value (1-63 of a-z, 0-9, -, _, ., alphanumeric at both ends) with k8s")
		}
		if net.ParseIP(c.ClusterAdvertiseHost) == nil && !headerToken(c.ClusterAdvertiseHost) {
			add("CLUSTER_ADVERTISE_HOST", "must be an IP address or a host name")
		}
		port("CLUSTER_PORT", c.ClusterPort)
		if c.ClusterLeaseTTL < 2*time.Second || c.ClusterLeaseTTL%time.Second != 0 {
			add("CLUSTER_LEASE_TTL", "must be whole seconds, at least 2s")
		}
		if c.ClusterProvider == clusterK8s {
			break // membership and fence on the API server: ETCD_ENDPOINTS is not used
		}
		for _, e := range c.EtcdEndpoints {
			if _, p, err := net.SplitHostPort(e); err != nil || p == "" {
				add("ETCD_ENDPOINTS", fmt.Sprintf("%q is not host:port", clip(e, 60)))
				break
			}
		}
		if len(c.EtcdEndpoints) == 0 {
			add("ETCD_ENDPOINTS", "must list at least one host:port")
		}
	default:
		add("CLUSTER_PROVIDER", "must be none, etcd or k8s")
	}

	if len(p) > 0 {
		return &ConfigError{Problems: p}
	}
	return nil
}

// validateJWT checks JWT_ALGORITHMS and the keys the algorithms need: the
// secret for HS256 (CONTRACT.md, Auth: at least 32 bytes, and not the spec's
// placeholder in production), a public key of the right type or a JWKS URL for
// RS256 and ES256. "none" is refused by name.
func (c Config) validateJWT(add func(name, msg string)) {
	hs, rs, es := false, false, false
	if len(c.JWTAlgorithms) == 0 {
		add("JWT_ALGORITHMS", "must name at least one of "+strings.Join(httpapi.SupportedAlgorithms(), ", "))
	}
	for _, a := range c.JWTAlgorithms {
		switch a {
		case httpapi.AlgHS256:
			hs = true
		case httpapi.AlgRS256:
			rs = true
		case httpapi.AlgES256:
			es = true
		case "NONE":
			add("JWT_ALGORITHMS", `"none" is never accepted: unsigned tokens would pass`)
		default:
			add("JWT_ALGORITHMS", fmt.Sprintf("%q is not one of %s", clip(a, 20), strings.Join(httpapi.SupportedAlgorithms(), ", ")))
		}
	}
	if hs {
		switch {
		case len(c.JWTSecret) < 32:
			add("JWT_SECRET", "must be at least 32 bytes")
		case c.NodeEnv == "production" && c.JWTSecret == defaultJWTSecret:
			add("JWT_SECRET", "must be set in production (the default is published in the spec)")
		}
	}
	if c.JWTJWKSRefreshInterval < time.Second {
		add("JWT_JWKS_REFRESH_INTERVAL", "must be at least 1s")
	}
	if c.JWTJWKSURL != "" {
		if u, err := url.Parse(c.JWTJWKSURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			add("JWT_JWKS_URL", "must be an http or https URL")
		}
	}
	switch {
	case c.JWTPublicKey != "" && c.JWTJWKSURL != "":
		add("JWT_PUBLIC_KEY", "set JWT_PUBLIC_KEY or JWT_JWKS_URL, not both")
	case c.JWTPublicKey != "":
		key, err := c.JWTKey()
		if err != nil {
			add("JWT_PUBLIC_KEY", err.Error())
			return
		}
		_, isRSA := key.(*rsa.PublicKey)
		_, isEC := key.(*ecdsa.PublicKey)
		switch {
		case rs && !isRSA:
			add("JWT_PUBLIC_KEY", "must be an RSA key when JWT_ALGORITHMS has RS256")
		case es && !isEC:
			add("JWT_PUBLIC_KEY", "must be an ECDSA P-256 key when JWT_ALGORITHMS has ES256")
		case !rs && !es:
			add("JWT_PUBLIC_KEY", "is set but JWT_ALGORITHMS has neither RS256 nor ES256")
		}
	case (rs || es) && c.JWTJWKSURL == "":
		add("JWT_ALGORITHMS", "RS256 and ES256 need JWT_PUBLIC_KEY or JWT_JWKS_URL")
	}
}

// JWTKey parses JWT_PUBLIC_KEY: a PEM "PUBLIC KEY" (PKIX), "RSA PUBLIC KEY"
// (PKCS #1) or "CERTIFICATE" block. Environment files often hold the PEM on
// one line with literal \n; those are read as line breaks. It returns nil
// when the variable is unset.
func (c Config) JWTKey() (any, error) {
	if c.JWTPublicKey == "" {
		return nil, nil
	}
	block, _ := pem.Decode([]byte(strings.ReplaceAll(c.JWTPublicKey, `\n`, "\n")))
	if block == nil {
		return nil, errors.New("must be a PEM public key (-----BEGIN PUBLIC KEY-----)")
	}
	var key any
	var err error
	switch block.Type {
	case "PUBLIC KEY":
		key, err = x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		key, err = x509.ParsePKCS1PublicKey(block.Bytes)
	case "CERTIFICATE":
		var cert *x509.Certificate
		if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
			key = cert.PublicKey
		}
	default:
		return nil, fmt.Errorf("PEM block %q is not a public key or certificate", clip(block.Type, 30))
	}
	if err != nil {
		return nil, fmt.Errorf("cannot parse the PEM public key: %v", err)
	}
	switch k := key.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return nil, errors.New("RSA key must have at least 2048 bits")
		}
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return nil, errors.New("ECDSA key must be on curve P-256 (ES256)")
		}
	default:
		return nil, fmt.Errorf("%T keys are not supported (RSA or ECDSA P-256)", key)
	}
	return key, nil
}

// TrustedProxies parses TRUST_PROXY: CIDRs ("10.0.0.0/8") and single addresses;
// "false" alone means none. "true" is refused: trusting every peer would let
// any client pick the IP it is rate limited by.
func (c Config) TrustedProxies() ([]netip.Prefix, error) {
	if len(c.TrustProxy) == 1 && strings.EqualFold(c.TrustProxy[0], "false") {
		return nil, nil
	}
	var out []netip.Prefix
	for _, v := range c.TrustProxy {
		if strings.EqualFold(v, "true") {
			return nil, errors.New(`must list the proxies' CIDRs ("true" would let any client choose its IP)`)
		}
		p, err := netip.ParsePrefix(v)
		if err != nil {
			a, aerr := netip.ParseAddr(v)
			if aerr != nil {
				return nil, fmt.Errorf("%q is not a CIDR such as 10.0.0.0/8 or an IP address", clip(v, 45))
			}
			p = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// noEffect lists the variables of the spec's configuration that are parsed and
// validated but change nothing in this service, each with why (README,
// Configuration). run logs a warning for each one the environment sets, so that
// nobody tunes a knob that is not connected.
var noEffect = []struct{ name, why string }{
	{"AUTH_SERVICE_URL", "the Auth Service is reached only through its RabbitMQ events"},
	{"COURSE_SERVICE_URL", "course ids are taken as given; no other service is called"},
	{"ANALYTICS_SERVICE_URL", "analytics consume the published events; no other service is called"},
	{"EMAIL_SERVICE_URL", "no email is sent; the Email Service consumes the published events"},
	{"BCRYPT_ROUNDS", "no password is stored here (the Auth Service owns them)"},
	{"JWT_EXPIRES_IN", "tokens are issued by the Auth Service; their exp is what counts"},
	{"JWT_REFRESH_EXPIRES_IN", "tokens are issued by the Auth Service"},
	{"MAX_FILE_SIZE", "there is no upload route (avatarUrl is a URL)"},
	{"ALLOWED_FILE_TYPES", "there is no upload route (avatarUrl is a URL)"},
	{"CACHE_TTL_USER_PREFERENCES", "preferences live in the user's actor, current by construction"},
	{"CACHE_TTL_USER_ENROLLMENTS", "enrollments live in the user's actor, current by construction"},
	{"HEALTH_CHECK_INTERVAL", "dependencies are checked when /health/* is asked, not on a timer"},
	{"ENABLE_PROFILE_COMPLETION_TRACKING", "profile completion is an answer of the contract"},
	{"ENABLE_ENROLLMENT_ANALYTICS", "enrollment stats are an answer of the contract"},
	{"ENABLE_PREFERENCE_CACHING", "preferences always live in the user's actor"},
}

// warnNoEffect logs a warning for each variable of noEffect that getenv sets.
func warnNoEffect(getenv func(string) string, logger *slog.Logger) {
	for _, v := range noEffect {
		if getenv(v.name) != "" {
			logger.Warn("configuration variable has no effect in this service",
				slog.String("variable", v.name), slog.String("why", v.why))
		}
	}
}

// headerToken reports whether s is an RFC 9110 token, as header names are.
func headerToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		if !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", b) >= 0) {
			return false
		}
	}
	return true
}

// logLevel maps LOG_LEVEL to slog; winston's levels finer than info become debug.
func logLevel(s string) (slog.Level, bool) {
	switch s {
	case "error":
		return slog.LevelError, true
	case "warn":
		return slog.LevelWarn, true
	case "info":
		return slog.LevelInfo, true
	case "http", "verbose", "debug", "silly":
		return slog.LevelDebug, true
	}
	return slog.LevelInfo, false
}

// SlogLevel returns LOG_LEVEL as a slog level (info for an unknown level, which
// Validate refuses anyway).
func (c Config) SlogLevel() slog.Level {
	l, _ := logLevel(c.LogLevel)
	return l
}

// Development reports whether NODE_ENV is development (error bodies may say more).
func (c Config) Development() bool { return c.NodeEnv == "development" }

// DatabaseURL returns the PostgreSQL connection URL: DATABASE_URL when the
// environment gave it, else the one built from the DB_* parts when the environment
// gave any of them, else DATABASE_URL's default. Built URLs escape every part and say
// sslmode=require or disable after DB_SSL.
func (c Config) DatabaseURL() string {
	if !c.dbFromParts && c.DatabaseURLEnv != "" {
		return c.DatabaseURLEnv
	}
	ssl := "disable"
	if c.DBSSL {
		ssl = "require"
	}
	u := url.URL{
		Scheme: "postgres", User: url.UserPassword(c.DBUser, c.DBPassword),
		Host: net.JoinHostPort(c.DBHost, strconv.Itoa(c.DBPort)),
		Path: "/" + c.DBName, RawPath: "/" + url.PathEscape(c.DBName),
		RawQuery: url.Values{"sslmode": {ssl}}.Encode(),
	}
	return u.String()
}

// RedisURL returns the Redis URL: REDIS_URL, or one built from REDIS_HOST, REDIS_PORT,
// REDIS_PASSWORD and REDIS_DB (chosen as in [Config.DatabaseURL]).
func (c Config) RedisURL() string {
	if !c.redisFromParts && c.RedisURLEnv != "" {
		return c.RedisURLEnv
	}
	u := url.URL{Scheme: "redis", Host: c.redisPartsAddr(), Path: "/" + strconv.Itoa(c.RedisDB)}
	if c.RedisPassword != "" {
		u.User = url.UserPassword("", c.RedisPassword)
	}
	return u.String()
}

// RedisAddr returns host:port of the Redis server that [Config.RedisURL] names
// (port 6379 when the URL has none).
func (c Config) RedisAddr() string {
	if !c.redisFromParts && c.RedisURLEnv != "" {
		u, err := url.Parse(c.RedisURLEnv)
		if err != nil {
			return ""
		}
		if u.Port() == "" {
			return net.JoinHostPort(u.Hostname(), "6379")
		}
		return u.Host
	}
	return c.redisPartsAddr()
}

func (c Config) redisPartsAddr() string {
	return net.JoinHostPort(c.RedisHost, strconv.Itoa(c.RedisPort))
}

// RabbitURL returns the AMQP URL: RABBITMQ_URL, or one built from the RABBITMQ_*
// parts and RABBITMQ_VHOST, escaped ("/" becomes %2F), chosen as in
// [Config.DatabaseURL].
func (c Config) RabbitURL() string {
	if !c.rabbitFromParts && c.RabbitMQURLEnv != "" {
		return c.RabbitMQURLEnv
	}
	u := url.URL{
		Scheme: "amqp", User: url.UserPassword(c.RabbitMQUsername, c.RabbitMQPassword),
		Host: net.JoinHostPort(c.RabbitMQHost, strconv.Itoa(c.RabbitMQPort)),
		Path: "/" + c.RabbitMQVHost, RawPath: "/" + url.PathEscape(c.RabbitMQVHost),
	}
	return u.String()
}

// Redacted returns every variable with its value as the service uses it, for a
// startup log line: secrets are replaced by "[REDACTED]" and passwords in URLs by
// "xxxxx". It also gives the URLs actually used (database, redis, rabbitmq).
func (c Config) Redacted() map[string]string {
	out := map[string]string{}
	v := reflect.ValueOf(c)
	for _, cv := range configVars() {
		f := v.FieldByName(cv.field)
		var s string
		switch x := f.Interface().(type) {
		case []string:
			s = strings.Join(x, ",")
		case string:
			s = x
		default:
			s = fmt.Sprint(x)
		}
		switch cv.redact {
		case "secret":
			if s != "" {
				s = "[REDACTED]"
			}
		case "url":
			s = redactURL(s)
		}
		out[cv.name] = s
	}
	out["database"] = redactURL(c.DatabaseURL())
	out["redis"] = redactURL(c.RedisURL())
	out["rabbitmq"] = redactURL(c.RabbitURL())
	return out
}

func redactURL(s string) string {
	if s == "" {
		return ""
	}
	u, err := url.Parse(s)
	if err != nil {
		return "[REDACTED]" // an unparsable URL may hold a password we cannot find
	}
	return u.Redacted()
}

// LogValue implements slog.LogValuer, so logging a Config logs [Config.Redacted].
func (c Config) LogValue() slog.Value {
	r := c.Redacted()
	keys := make([]string, 0, len(r))
	for k := range r {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	attrs := make([]slog.Attr, len(keys))
	for i, k := range keys {
		attrs[i] = slog.String(k, r[k])
	}
	return slog.GroupValue(attrs...)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
