package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"log/slog"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/redis/rueidis"
)

// envOf returns a getenv over m.
func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func mustLoad(tb testing.TB, m map[string]string) Config {
	tb.Helper()
	c, err := LoadConfig(envOf(m))
	if err != nil {
		tb.Fatalf("LoadConfig(%v): %v", m, err)
	}
	return c
}

// problemsOf returns the problems of a *ConfigError, failing if err is another error.
func problemsOf(tb testing.TB, err error) []ConfigProblem {
	tb.Helper()
	var ce *ConfigError
	if !errors.As(err, &ce) {
		tb.Fatalf("error %v (%T) is not a *ConfigError", err, err)
	}
	return ce.Problems
}

// specDefaults is the spec's "Environment Variables" block, verbatim (DB_PASSWORD from
// that block, not the schema's "password"); secrets are checked separately.
var specDefaults = map[string]string{
	"PORT": "3002", "NODE_ENV": "development", "HOST": "0.0.0.0",
	"DATABASE_URL": "postgresql://lms_user:xxxxx@localhost:5432/lms_users",
	"DB_HOST":      "localhost", "DB_PORT": "5432", "DB_NAME": "lms_users", "DB_USER": "lms_user",
	"DB_SSL": "false", "DB_POOL_MIN": "2", "DB_POOL_MAX": "10",
	"REDIS_URL": "redis://localhost:6379", "REDIS_HOST": "localhost", "REDIS_PORT": "6379",
	"REDIS_PASSWORD": "", "REDIS_DB": "0", "REDIS_KEY_PREFIX": "user-service:",
	"RABBITMQ_URL": "amqp://localhost:5672", "RABBITMQ_HOST": "localhost", "RABBITMQ_PORT": "5672",
	"RABBITMQ_USERNAME": "guest", "RABBITMQ_VHOST": "/",
	"RABBITMQ_EXCHANGE": "lms.events", "RABBITMQ_QUEUE": "user-service.events",
	"JWT_EXPIRES_IN": "1d", "JWT_REFRESH_EXPIRES_IN": "7d",
	"JWT_ALGORITHMS": "HS256", "JWT_PUBLIC_KEY": "", "JWT_JWKS_URL": "", "JWT_JWKS_REFRESH_INTERVAL": "10m0s",
	"AUTH_SERVICE_URL": "http://localhost:3001", "COURSE_SERVICE_URL": "http://localhost:3003",
	"ANALYTICS_SERVICE_URL": "http://localhost:3004", "EMAIL_SERVICE_URL": "http://localhost:3005",
	"RATE_LIMIT_MAX": "100", "RATE_LIMIT_WINDOW": "60000", "RATE_LIMIT_SKIP_SUCCESSFUL": "false",
	"RATE_LIMIT_LEASE_FRACTION": "0.01", "CORS_ORIGIN": "http://localhost:3000", "CORS_CREDENTIALS": "true",
	"CORS_METHODS": "GET,POST,PUT,PATCH,DELETE,OPTIONS", "CORS_ALLOWED_HEADERS": "Content-Type,Authorization,X-Requested-With",
	"HELMET_ENABLED": "true", "BCRYPT_ROUNDS": "12", "TRUST_PROXY": "",
	"LOG_LEVEL": "info", "LOG_FORMAT": "json", "LOG_FILE_ENABLED": "false", "LOG_FILE_PATH": "./logs/user-service.log",
	"CACHE_TTL_USER_PROFILE": "900", "CACHE_TTL_USER_PREFERENCES": "1800",
	"CACHE_TTL_USER_ENROLLMENTS": "300", "CACHE_TTL_USER_SEARCH": "120", "EVENT_RETENTION": "7d", "ERASURE_COOL_OFF": "7d",
	"DELETED_USER_RETENTION": "30d", "SESSION_RETENTION": "90d", "IDEMPOTENCY_RETENTION": "1d", "PROCESSED_MESSAGE_RETENTION": "7d",
	"AUDIT_RETENTION": "730d", "RETENTION_INTERVAL": "1h0m0s", "RETENTION_BATCH_SIZE": "1000",
	"DEFAULT_PAGE_SIZE": "20", "MAX_PAGE_SIZE": "100",
	"MAX_FILE_SIZE": "5242880", "ALLOWED_FILE_TYPES": "image/jpeg,image/png,image/gif,image/webp",
	"HEALTH_CHECK_TIMEOUT": "5000", "HEALTH_CHECK_INTERVAL": "30000",
	"METRICS_ENABLED": "true", "METRICS_PORT": "9090", "METRICS_PATH": "/metrics",
	"ENABLE_USER_REGISTRATION": "true", "ENABLE_PROFILE_COMPLETION_TRACKING": "true",
	"ENABLE_ENROLLMENT_ANALYTICS": "true", "ENABLE_PREFERENCE_CACHING": "true", "ENABLE_SESSION_TRACKING": "true",
	"AUDIT_ENABLED": "true", "AUDIT_SENSITIVE_FIELDS": "password,email,phone",
	// This rebuild's additions.
	"ACTOR_IDLE_TIMEOUT": "10m0s", "ACTOR_MAX_ACTIVE": "100000", "WRITE_BATCH_MAX": "256",
	"WRITE_BATCH_WAIT": "0s", "SHUTDOWN_TIMEOUT": "20s", "REQUEST_TIMEOUT": "10s",
	"HTTP_MAX_CONNS": "10000", "HTTP_MAX_CONNS_PER_IP": "0", "HTTP_IDLE_TIMEOUT": "2m0s", "HEALTH_CACHE_TTL": "1s",
	"QUOTA_PREFERENCES_PER_USER": "500", "QUOTA_PREFERENCE_BYTES_PER_USER": "262144", "QUOTA_ENROLLMENTS_PER_USER": "5000", "QUOTA_SESSIONS_PER_USER": "100",
	"CLUSTER_PROVIDER": "none", "CLUSTER_NAME": "userservice", "CLUSTER_ADVERTISE_HOST": "127.0.0.1",
	"CLUSTER_PORT": "8090", "ETCD_ENDPOINTS": "127.0.0.1:2379", "CLUSTER_LEASE_TTL": "5s",
	"POD_NAME": "", "POD_NAMESPACE": "",
	"SNAPSHOT_WRITE_DELAY": "30s", "GC_HEAP_FLOOR_MB": "512", "TOKEN_CACHE_SIZE": "10000",
	"JOB_CONCURRENCY": "2", "JOB_ITEMS_PER_SECOND": "50", "JOB_MAX_ITEMS": "100000",
}

func TestLoadConfigDefaults(t *testing.T) {
	c := mustLoad(t, nil)

	t.Run("every variable has the spec's default", func(t *testing.T) {
		got := c.Redacted()
		for name, want := range specDefaults {
			if got[name] != want {
				t.Errorf("%s = %q, want %q", name, got[name], want)
			}
		}
		for _, v := range configVars() {
			if _, ok := specDefaults[v.name]; !ok && v.redact != "secret" {
				t.Errorf("variable %s has no expected default in this test", v.name)
			}
		}
	})
	t.Run("secrets", func(t *testing.T) {
		if c.DBPassword != "lms_password" || c.RedisPassword != "" || c.RabbitMQPassword != "guest" {
			t.Errorf("passwords = %q %q %q", c.DBPassword, c.RedisPassword, c.RabbitMQPassword)
		}
		if c.JWTSecret != "your-super-secret-jwt-key-change-in-production" {
			t.Errorf("JWT_SECRET = %q", c.JWTSecret)
		}
		if c.DatabaseURLEnv != "postgresql://lms_user:lms_password@localhost:5432/lms_users" {
			t.Errorf("DATABASE_URL = %q", c.DatabaseURLEnv)
		}
	})
	t.Run("typed values", func(t *testing.T) {
		for _, tc := range []struct {
			name      string
			got, want time.Duration
		}{
			{"RATE_LIMIT_WINDOW", c.RateLimitWindow.Duration(), time.Minute},
			{"HEALTH_CHECK_TIMEOUT", c.HealthCheckTimeout.Duration(), 5 * time.Second},
			{"HEALTH_CHECK_INTERVAL", c.HealthCheckInterval.Duration(), 30 * time.Second},
			{"CACHE_TTL_USER_PROFILE", c.CacheTTLUserProfile.Duration(), 15 * time.Minute},
			{"CACHE_TTL_USER_PREFERENCES", c.CacheTTLUserPreferences.Duration(), 30 * time.Minute},
			{"CACHE_TTL_USER_ENROLLMENTS", c.CacheTTLUserEnrollments.Duration(), 5 * time.Minute},
			{"CACHE_TTL_USER_SEARCH", c.CacheTTLUserSearch.Duration(), 2 * time.Minute},
			{"JWT_EXPIRES_IN", c.JWTExpiresIn.Duration(), 24 * time.Hour},
			{"JWT_REFRESH_EXPIRES_IN", c.JWTRefreshExpiresIn.Duration(), 7 * 24 * time.Hour},
			{"ACTOR_IDLE_TIMEOUT", c.ActorIdleTimeout, 10 * time.Minute},
			{"WRITE_BATCH_WAIT", c.WriteBatchWait, 0},
			{"SHUTDOWN_TIMEOUT", c.ShutdownTimeout, 20 * time.Second},
			{"REQUEST_TIMEOUT", c.RequestTimeout, 10 * time.Second},
			{"HTTP_IDLE_TIMEOUT", c.HTTPIdleTimeout, 120 * time.Second},
			{"HEALTH_CACHE_TTL", c.HealthCacheTTL, time.Second},
			{"SNAPSHOT_WRITE_DELAY", c.SnapshotWriteDelay, 30 * time.Second},
		} {
			if tc.got != tc.want {
				t.Errorf("%s = %v, want %v", tc.name, tc.got, tc.want)
			}
		}
		if c.MaxFileSize != 5<<20 || c.ActorMaxActive != 100000 || c.WriteBatchMax != 256 {
			t.Errorf("MaxFileSize %d ActorMaxActive %d WriteBatchMax %d", c.MaxFileSize, c.ActorMaxActive, c.WriteBatchMax)
		}
		if !reflect.DeepEqual(c.CORSMethods, []string{"GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}) {
			t.Errorf("CORSMethods = %q", c.CORSMethods)
		}
		if c.SlogLevel() != slog.LevelInfo || !c.Development() {
			t.Errorf("SlogLevel %v Development %v", c.SlogLevel(), c.Development())
		}
	})
	t.Run("connection URLs are the default URLs", func(t *testing.T) {
		if got := c.DatabaseURL(); got != "postgresql://lms_user:lms_password@localhost:5432/lms_users" {
			t.Errorf("DatabaseURL() = %q", got)
		}
		if got := c.RedisURL(); got != "redis://localhost:6379" {
			t.Errorf("RedisURL() = %q", got)
		}
		if got := c.RedisAddr(); got != "localhost:6379" {
			t.Errorf("RedisAddr() = %q", got)
		}
		if got := c.RabbitURL(); got != "amqp://localhost:5672" {
			t.Errorf("RabbitURL() = %q", got)
		}
	})
	t.Run("defaults pass Validate", func(t *testing.T) {
		if err := c.Validate(); err != nil {
			t.Error(err)
		}
	})
}

func TestLoadConfigReadsEveryVariable(t *testing.T) {
	env := map[string]string{
		"PORT": "8080", "NODE_ENV": "production", "HOST": "127.0.0.1",
		"DATABASE_URL": "postgres://u:p@db:5433/x", "DB_HOST": "dbh", "DB_PORT": "6543", "DB_NAME": "n",
		"DB_USER": "u2", "DB_PASSWORD": "pw", "DB_SSL": "true", "DB_POOL_MIN": "0", "DB_POOL_MAX": "50",
		"REDIS_URL": "rediss://r:6380/2", "REDIS_HOST": "rh", "REDIS_PORT": "7000", "REDIS_PASSWORD": "rp",
		"REDIS_DB": "5", "REDIS_KEY_PREFIX": "us:",
		"RABBITMQ_URL": "amqps://mq", "RABBITMQ_HOST": "mqh", "RABBITMQ_PORT": "5673", "RABBITMQ_USERNAME": "mu",
		"RABBITMQ_PASSWORD": "mp", "RABBITMQ_VHOST": "lms", "RABBITMQ_EXCHANGE": "ex", "RABBITMQ_QUEUE": "q",
		"JWT_SECRET": strings.Repeat("s", 40), "JWT_EXPIRES_IN": "1h", "JWT_REFRESH_EXPIRES_IN": "30d",
		"JWT_ALGORITHMS": "hs256, RS256", "JWT_JWKS_URL": "https://auth/.well-known/jwks.json", "JWT_JWKS_REFRESH_INTERVAL": "5m",
		"AUTH_SERVICE_URL": "https://auth", "COURSE_SERVICE_URL": "https://course",
		"ANALYTICS_SERVICE_URL": "https://analytics", "EMAIL_SERVICE_URL": "https://email",
		"RATE_LIMIT_MAX": "7", "RATE_LIMIT_WINDOW": "1000", "RATE_LIMIT_SKIP_SUCCESSFUL": "true",
		"RATE_LIMIT_LEASE_FRACTION": "0.05", "CORS_ORIGIN": "*", "CORS_CREDENTIALS": "false", "CORS_METHODS": "GET", "CORS_ALLOWED_HEADERS": "X-A",
		"HELMET_ENABLED": "false", "BCRYPT_ROUNDS": "10", "TRUST_PROXY": "10.0.0.0/8, 192.0.2.1",
		"LOG_LEVEL": "debug", "LOG_FORMAT": "text", "LOG_FILE_ENABLED": "true", "LOG_FILE_PATH": "/var/log/u.log",
		"CACHE_TTL_USER_PROFILE": "1", "CACHE_TTL_USER_PREFERENCES": "2", "CACHE_TTL_USER_ENROLLMENTS": "3",
		"CACHE_TTL_USER_SEARCH": "4", "DEFAULT_PAGE_SIZE": "10", "MAX_PAGE_SIZE": "50", "EVENT_RETENTION": "36h", "ERASURE_COOL_OFF": "2s",
		"DELETED_USER_RETENTION": "0d", "SESSION_RETENTION": "10d", "IDEMPOTENCY_RETENTION": "2d", "PROCESSED_MESSAGE_RETENTION": "3d",
		"AUDIT_RETENTION": "400d", "RETENTION_INTERVAL": "5m", "RETENTION_BATCH_SIZE": "50",
		"MAX_FILE_SIZE": "1024", "ALLOWED_FILE_TYPES": "image/png",
		"HEALTH_CHECK_TIMEOUT": "250", "HEALTH_CHECK_INTERVAL": "1000",
		"METRICS_ENABLED": "false", "METRICS_PORT": "9100", "METRICS_PATH": "/m",
		"ENABLE_USER_REGISTRATION": "false", "ENABLE_PROFILE_COMPLETION_TRACKING": "false",
		"ENABLE_ENROLLMENT_ANALYTICS": "false", "ENABLE_PREFERENCE_CACHING": "false", "ENABLE_SESSION_TRACKING": "false",
		"AUDIT_ENABLED": "false", "AUDIT_SENSITIVE_FIELDS": "password",
		"ACTOR_IDLE_TIMEOUT": "30s", "ACTOR_MAX_ACTIVE": "5", "WRITE_BATCH_MAX": "64",
		"WRITE_BATCH_WAIT": "5ms", "SHUTDOWN_TIMEOUT": "5s", "REQUEST_TIMEOUT": "3s",
		"HTTP_MAX_CONNS": "500", "HTTP_MAX_CONNS_PER_IP": "20", "HTTP_IDLE_TIMEOUT": "30s", "HEALTH_CACHE_TTL": "250ms",
		"QUOTA_PREFERENCES_PER_USER": "50", "QUOTA_PREFERENCE_BYTES_PER_USER": "0", "QUOTA_ENROLLMENTS_PER_USER": "7", "QUOTA_SESSIONS_PER_USER": "3",
		"CLUSTER_PROVIDER": "etcd", "CLUSTER_NAME": "c1", "CLUSTER_ADVERTISE_HOST": "10.0.0.7", "CLUSTER_PORT": "9000",
		"ETCD_ENDPOINTS": "e1:2379,e2:2379", "CLUSTER_LEASE_TTL": "3s",
		"POD_NAME": "userservice-7f9c-x2", "POD_NAMESPACE": "lms",
		"SNAPSHOT_WRITE_DELAY": "0s", "GC_HEAP_FLOOR_MB": "64", "TOKEN_CACHE_SIZE": "50000",
		"JOB_CONCURRENCY": "8", "JOB_ITEMS_PER_SECOND": "-1", "JOB_MAX_ITEMS": "500",
	}
	for _, v := range configVars() {
		// JWT_PUBLIC_KEY excludes JWT_JWKS_URL: TestJWTKeys reads it.
		if _, ok := env[v.name]; !ok && v.name != "JWT_PUBLIC_KEY" {
			t.Errorf("test sets no value for %s", v.name)
		}
	}
	got := mustLoad(t, env)
	want := Config{
		Port: 8080, NodeEnv: "production", Host: "127.0.0.1",
		DatabaseURLEnv: "postgres://u:p@db:5433/x", DBHost: "dbh", DBPort: 6543, DBName: "n",
		DBUser: "u2", DBPassword: "pw", DBSSL: true, DBPoolMin: 0, DBPoolMax: 50,
		RedisURLEnv: "rediss://r:6380/2", RedisHost: "rh", RedisPort: 7000, RedisPassword: "rp",
		RedisDB: 5, RedisKeyPrefix: "us:",
		RabbitMQURLEnv: "amqps://mq", RabbitMQHost: "mqh", RabbitMQPort: 5673, RabbitMQUsername: "mu",
		RabbitMQPassword: "mp", RabbitMQVHost: "lms", RabbitMQExchange: "ex", RabbitMQQueue: "q",
		JWTSecret: strings.Repeat("s", 40), JWTExpiresIn: Lifetime(time.Hour), JWTRefreshExpiresIn: Lifetime(30 * 24 * time.Hour),
		JWTAlgorithms: []string{"HS256", "RS256"}, JWTJWKSURL: "https://auth/.well-known/jwks.json", JWTJWKSRefreshInterval: 5 * time.Minute,
		AuthServiceURL: "https://auth", CourseServiceURL: "https://course",
		AnalyticsServiceURL: "https://analytics", EmailServiceURL: "https://email",
		RateLimitMax: 7, RateLimitWindow: Millis(time.Second), RateLimitSkipSuccessful: true,
		RateLimitLeaseFraction: 0.05, CORSOrigin: []string{"*"}, CORSCredentials: false, CORSMethods: []string{"GET"}, CORSAllowedHeaders: []string{"X-A"},
		HelmetEnabled: false, BcryptRounds: 10, TrustProxy: []string{"10.0.0.0/8", "192.0.2.1"},
		LogLevel: "debug", LogFormat: "text", LogFileEnabled: true, LogFilePath: "/var/log/u.log",
		CacheTTLUserProfile: Seconds(time.Second), CacheTTLUserPreferences: Seconds(2 * time.Second),
		CacheTTLUserEnrollments: Seconds(3 * time.Second), CacheTTLUserSearch: Seconds(4 * time.Second),
		EventRetention: Lifetime(36 * time.Hour), ErasureCoolOff: Lifetime(2 * time.Second),
		DeletedUserRetention: 0, SessionRetention: Lifetime(10 * 24 * time.Hour), IdempotencyRetention: Lifetime(48 * time.Hour),
		ProcessedMessageRetention: Lifetime(72 * time.Hour), AuditRetention: Lifetime(400 * 24 * time.Hour),
		RetentionInterval: Lifetime(5 * time.Minute), RetentionBatchSize: 50,
		DefaultPageSize: 10, MaxPageSize: 50, MaxFileSize: 1024, AllowedFileTypes: []string{"image/png"},
		HealthCheckTimeout: Millis(250 * time.Millisecond), HealthCheckInterval: Millis(time.Second),
		MetricsEnabled: false, MetricsPort: 9100, MetricsPath: "/m",
		AuditEnabled: false, AuditSensitiveFields: []string{"password"},
		ActorIdleTimeout: 30 * time.Second, ActorMaxActive: 5, WriteBatchMax: 64,
		WriteBatchWait: 5 * time.Millisecond, ShutdownTimeout: 5 * time.Second, RequestTimeout: 3 * time.Second,
		HTTPMaxConns: 500, HTTPMaxConnsPerIP: 20, HTTPIdleTimeout: 30 * time.Second, HealthCacheTTL: 250 * time.Millisecond,
		QuotaPreferencesPerUser: 50, QuotaPreferenceBytesPerUser: 0, QuotaEnrollmentsPerUser: 7, QuotaSessionsPerUser: 3,
		ClusterProvider: "etcd", ClusterName: "c1", ClusterAdvertiseHost: "10.0.0.7", ClusterPort: 9000,
		EtcdEndpoints: []string{"e1:2379", "e2:2379"}, ClusterLeaseTTL: 3 * time.Second,
		PodName: "userservice-7f9c-x2", PodNamespace: "lms",
		SnapshotWriteDelay: 0, GCHeapFloorMB: 64, TokenCacheSize: 50000,
		JobConcurrency: 8, JobItemsPerSecond: -1, JobMaxItems: 500,
	}
	if !reflect.DeepEqual(got, want) {
		gv, wv := reflect.ValueOf(got), reflect.ValueOf(want)
		for i := 0; i < gv.NumField(); i++ {
			if f := gv.Type().Field(i); f.IsExported() && !reflect.DeepEqual(gv.Field(i).Interface(), wv.Field(i).Interface()) {
				t.Errorf("%s = %v, want %v", f.Name, gv.Field(i).Interface(), wv.Field(i).Interface())
			}
		}
		if t.Failed() == false {
			t.Errorf("got %+v, want %+v", got, want)
		}
	}
	if got.SlogLevel() != slog.LevelDebug || got.Development() {
		t.Errorf("SlogLevel %v Development %v", got.SlogLevel(), got.Development())
	}
}

func TestLoadConfigIgnoresUnknownAndProcessVariables(t *testing.T) {
	t.Setenv("PORT", "1234") // the process environment must not leak past getenv
	t.Setenv("JWT_SECRET", "short")
	c := mustLoad(t, map[string]string{"PORTS": "1", "FOO": "bar", "port": "abc", "LOG_LEVEL_X": "loud"})
	if c.Port != 3002 || c.LogLevel != "info" {
		t.Errorf("Port %d LogLevel %q, want the defaults", c.Port, c.LogLevel)
	}
}

func TestLoadConfigRefusesBadValues(t *testing.T) {
	secret := strings.Repeat("k", 32)
	for _, tc := range []struct {
		name    string
		env     map[string]string
		wantVar string
		wantMsg string // substring of the problem's message
	}{
		{"port zero", map[string]string{"PORT": "0"}, "PORT", "must be 1-65535"},
		{"port too large", map[string]string{"PORT": "65536"}, "PORT", "must be 1-65535"},
		{"port not a number", map[string]string{"PORT": "abc"}, "PORT", `must be an integer (got "abc")`},
		{"port beyond int32", map[string]string{"PORT": "99999999999"}, "PORT", "out of range"},
		{"node env", map[string]string{"NODE_ENV": "staging"}, "NODE_ENV", "development, production or test"},
		{"blank host", map[string]string{"HOST": "  "}, "HOST", "must not be empty"},
		{"database url scheme", map[string]string{"DATABASE_URL": "mysql://u:p@h/db"}, "DATABASE_URL", "postgres or postgresql"},
		{"database url unparsable", map[string]string{"DATABASE_URL": "postgres://u:p@h:port/db"}, "DATABASE_URL", "must be a URL"},
		{"db port", map[string]string{"DB_PORT": "-1"}, "DB_PORT", "1-65535"},
		{"db ssl not a bool", map[string]string{"DB_SSL": "maybe"}, "DB_SSL", "must be true or false"},
		{"negative pool min", map[string]string{"DB_POOL_MIN": "-1"}, "DB_POOL_MIN", "at least 0"},
		{"zero pool max", map[string]string{"DB_POOL_MAX": "0"}, "DB_POOL_MAX", "at least 1"},
		{"pool min above max", map[string]string{"DB_POOL_MIN": "11"}, "DB_POOL_MIN", "must not exceed DB_POOL_MAX"},
		{"redis url scheme", map[string]string{"REDIS_URL": "http://cache:6379"}, "REDIS_URL", "redis or rediss"},
		{"redis url without host", map[string]string{"REDIS_URL": "redis:///0"}, "REDIS_URL", "must name a host"},
		{"redis db", map[string]string{"REDIS_DB": "-1"}, "REDIS_DB", "at least 0"},
		{"redis port", map[string]string{"REDIS_PORT": "x"}, "REDIS_PORT", "must be an integer"},
		{"rabbit url scheme", map[string]string{"RABBITMQ_URL": "redis://mq"}, "RABBITMQ_URL", "amqp or amqps"},
		{"rabbit port", map[string]string{"RABBITMQ_PORT": "70000"}, "RABBITMQ_PORT", "1-65535"},
		{"short jwt secret", map[string]string{"JWT_SECRET": strings.Repeat("k", 31)}, "JWT_SECRET", "at least 32 bytes"},
		{"default jwt secret in production", map[string]string{"NODE_ENV": "production"}, "JWT_SECRET", "must be set in production"},
		{"jwt lifetime without unit", map[string]string{"JWT_EXPIRES_IN": "3600"}, "JWT_EXPIRES_IN", "must have a unit"},
		{"jwt lifetime zero", map[string]string{"JWT_EXPIRES_IN": "0d"}, "JWT_EXPIRES_IN", "greater than 0"},
		{"jwt refresh lifetime garbage", map[string]string{"JWT_REFRESH_EXPIRES_IN": "seven days"}, "JWT_REFRESH_EXPIRES_IN", "24h, 7d"},
		{"service url relative", map[string]string{"AUTH_SERVICE_URL": "/auth"}, "AUTH_SERVICE_URL", "http or https"},
		{"service url scheme", map[string]string{"EMAIL_SERVICE_URL": "smtp://mail"}, "EMAIL_SERVICE_URL", "http or https"},
		{"rate limit max", map[string]string{"RATE_LIMIT_MAX": "0"}, "RATE_LIMIT_MAX", "greater than 0"},
		{"rate limit window as a duration", map[string]string{"RATE_LIMIT_WINDOW": "1m"}, "RATE_LIMIT_WINDOW", "integer number of milliseconds"},
		{"rate limit window zero", map[string]string{"RATE_LIMIT_WINDOW": "0"}, "RATE_LIMIT_WINDOW", "greater than 0"},
		{"rate limit skip not a bool", map[string]string{"RATE_LIMIT_SKIP_SUCCESSFUL": "yes"}, "RATE_LIMIT_SKIP_SUCCESSFUL", "true or false"},
		{"rate limit lease fraction over 1", map[string]string{"RATE_LIMIT_LEASE_FRACTION": "1.5"}, "RATE_LIMIT_LEASE_FRACTION", "between 0 and 1"},
		{"rate limit lease fraction negative", map[string]string{"RATE_LIMIT_LEASE_FRACTION": "-0.1"}, "RATE_LIMIT_LEASE_FRACTION", "between 0 and 1"},
		{"cors origin only separators", map[string]string{"CORS_ORIGIN": " , "}, "CORS_ORIGIN", "must not be empty"},
		{"cors origin without scheme", map[string]string{"CORS_ORIGIN": "localhost:3000"}, "CORS_ORIGIN", "not * or an origin"},
		{"cors origin with a path", map[string]string{"CORS_ORIGIN": "https://app.example.com/login"}, "CORS_ORIGIN", "not * or an origin"},
		{"cors method", map[string]string{"CORS_METHODS": "GET,FETCH"}, "CORS_METHODS", `"FETCH"`},
		{"cors header", map[string]string{"CORS_ALLOWED_HEADERS": "Content Type"}, "CORS_ALLOWED_HEADERS", "not a header name"},
		{"bcrypt rounds", map[string]string{"BCRYPT_ROUNDS": "3"}, "BCRYPT_ROUNDS", "4-31"},
		{"log level", map[string]string{"LOG_LEVEL": "loud"}, "LOG_LEVEL", "error, warn, info or debug"},
		{"log format", map[string]string{"LOG_FORMAT": "xml"}, "LOG_FORMAT", "json or text"},
		{"cache ttl zero", map[string]string{"CACHE_TTL_USER_PROFILE": "0"}, "CACHE_TTL_USER_PROFILE", "greater than 0"},
		{"cache ttl as a duration", map[string]string{"CACHE_TTL_USER_SEARCH": "2m"}, "CACHE_TTL_USER_SEARCH", "integer number of seconds"},
		{"max page size above 100", map[string]string{"MAX_PAGE_SIZE": "101"}, "MAX_PAGE_SIZE", "1-100"},
		{"default page size above max", map[string]string{"MAX_PAGE_SIZE": "40", "DEFAULT_PAGE_SIZE": "50"}, "DEFAULT_PAGE_SIZE", "must not exceed MAX_PAGE_SIZE"},
		{"default page size zero", map[string]string{"DEFAULT_PAGE_SIZE": "0"}, "DEFAULT_PAGE_SIZE", "at least 1"},
		{"max file size", map[string]string{"MAX_FILE_SIZE": "0"}, "MAX_FILE_SIZE", "greater than 0"},
		{"file type", map[string]string{"ALLOWED_FILE_TYPES": "image/png,jpeg"}, "ALLOWED_FILE_TYPES", `"jpeg"`},
		{"health timeout negative", map[string]string{"HEALTH_CHECK_TIMEOUT": "-5"}, "HEALTH_CHECK_TIMEOUT", "greater than 0"},
		{"health interval fractional", map[string]string{"HEALTH_CHECK_INTERVAL": "1.5"}, "HEALTH_CHECK_INTERVAL", "integer number of milliseconds"},
		{"metrics port", map[string]string{"METRICS_PORT": "0"}, "METRICS_PORT", "1-65535"},
		{"metrics path", map[string]string{"METRICS_PATH": "metrics"}, "METRICS_PATH", "starting with /"},
		{"feature flag", map[string]string{"ENABLE_SESSION_TRACKING": "on"}, "ENABLE_SESSION_TRACKING", "true or false"},
		{"actor idle timeout zero", map[string]string{"ACTOR_IDLE_TIMEOUT": "0s"}, "ACTOR_IDLE_TIMEOUT", "greater than 0"},
		{"actor idle timeout garbage", map[string]string{"ACTOR_IDLE_TIMEOUT": "ten minutes"}, "ACTOR_IDLE_TIMEOUT", "must be a duration"},
		{"actor idle timeout without unit", map[string]string{"ACTOR_IDLE_TIMEOUT": "600"}, "ACTOR_IDLE_TIMEOUT", "must be a duration"},
		{"actor max active", map[string]string{"ACTOR_MAX_ACTIVE": "0"}, "ACTOR_MAX_ACTIVE", "at least 1"},
		{"idempotency retention too short", map[string]string{"IDEMPOTENCY_RETENTION": "12h"}, "IDEMPOTENCY_RETENTION", "at least 24h"},
		{"retention interval zero", map[string]string{"RETENTION_INTERVAL": "0s"}, "RETENTION_INTERVAL", "greater than 0"},
		{"retention batch zero", map[string]string{"RETENTION_BATCH_SIZE": "0"}, "RETENTION_BATCH_SIZE", "1-100000"},
		{"erasure cool-off zero", map[string]string{"ERASURE_COOL_OFF": "0s"}, "ERASURE_COOL_OFF", "greater than 0"},
		{"write batch max zero", map[string]string{"WRITE_BATCH_MAX": "0"}, "WRITE_BATCH_MAX", "1-10000"},
		{"write batch max too large", map[string]string{"WRITE_BATCH_MAX": "10001"}, "WRITE_BATCH_MAX", "1-10000"},
		{"no connections", map[string]string{"HTTP_MAX_CONNS": "0"}, "HTTP_MAX_CONNS", "at least 1"},
		{"negative per-IP limit", map[string]string{"HTTP_MAX_CONNS_PER_IP": "-1"}, "HTTP_MAX_CONNS_PER_IP", "0 (no limit)"},
		{"zero idle timeout", map[string]string{"HTTP_IDLE_TIMEOUT": "0s"}, "HTTP_IDLE_TIMEOUT", ""},
		{"health cache too long", map[string]string{"HEALTH_CACHE_TTL": "2m"}, "HEALTH_CACHE_TTL", "0-1m"},
		{"negative quota", map[string]string{"QUOTA_ENROLLMENTS_PER_USER": "-1"}, "QUOTA_ENROLLMENTS_PER_USER", "0 (no limit)"},
		{"write batch wait too long", map[string]string{"WRITE_BATCH_WAIT": "1001ms"}, "WRITE_BATCH_WAIT", "0-1s"},
		{"snapshot write delay negative", map[string]string{"SNAPSHOT_WRITE_DELAY": "-1s"}, "SNAPSHOT_WRITE_DELAY", "0-1h"},
		{"negative heap floor", map[string]string{"GC_HEAP_FLOOR_MB": "-1"}, "GC_HEAP_FLOOR_MB", "0 (off)"},
		{"empty token cache", map[string]string{"TOKEN_CACHE_SIZE": "0"}, "TOKEN_CACHE_SIZE", "1-10000000"},
		{"job concurrency zero", map[string]string{"JOB_CONCURRENCY": "0"}, "JOB_CONCURRENCY", "1-256"},
		{"job rate zero", map[string]string{"JOB_ITEMS_PER_SECOND": "0"}, "JOB_ITEMS_PER_SECOND", "positive"},
		{"job max items too large", map[string]string{"JOB_MAX_ITEMS": "20000000"}, "JOB_MAX_ITEMS", "1-10000000"},
		{"write batch wait negative", map[string]string{"WRITE_BATCH_WAIT": "-1ms"}, "WRITE_BATCH_WAIT", "0-1s"},
		{"shutdown timeout", map[string]string{"SHUTDOWN_TIMEOUT": "0s"}, "SHUTDOWN_TIMEOUT", "greater than 0"},
		{"request timeout", map[string]string{"REQUEST_TIMEOUT": "-1s"}, "REQUEST_TIMEOUT", "greater than 0"},
		{"cluster provider unknown", map[string]string{"CLUSTER_PROVIDER": "consul"}, "CLUSTER_PROVIDER", "none, etcd or k8s"},
		{"cluster name k8s label", map[string]string{"CLUSTER_PROVIDER": "k8s", "CLUSTER_NAME": "users-"}, "CLUSTER_NAME", "label value"},
		{"cluster lease ttl k8s", map[string]string{"CLUSTER_PROVIDER": "k8s", "CLUSTER_LEASE_TTL": "1s"}, "CLUSTER_LEASE_TTL", "whole seconds"},
		{"cluster port", map[string]string{"CLUSTER_PROVIDER": "etcd", "CLUSTER_PORT": "0"}, "CLUSTER_PORT", "1-65535"},
		{"cluster name", map[string]string{"CLUSTER_PROVIDER": "etcd", "CLUSTER_NAME": "a/b"}, "CLUSTER_NAME", "without /"},
		{"cluster lease ttl", map[string]string{"CLUSTER_PROVIDER": "etcd", "CLUSTER_LEASE_TTL": "1500ms"}, "CLUSTER_LEASE_TTL", "whole seconds"},
		{"etcd endpoints", map[string]string{"CLUSTER_PROVIDER": "etcd", "ETCD_ENDPOINTS": "e1:2379,localhost"}, "ETCD_ENDPOINTS", "host:port"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, ok := tc.env["JWT_SECRET"]; !ok && tc.wantVar != "JWT_SECRET" {
				tc.env["JWT_SECRET"] = secret
			}
			c, err := LoadConfig(envOf(tc.env))
			if err == nil {
				t.Fatalf("LoadConfig(%v) succeeded, want a problem with %s", tc.env, tc.wantVar)
			}
			if !reflect.DeepEqual(c, Config{}) {
				t.Error("LoadConfig returned a non-zero Config with its error")
			}
			ps := problemsOf(t, err)
			if len(ps) != 1 {
				t.Errorf("problems = %+v, want exactly one", ps)
			}
			if ps[0].Var != tc.wantVar || !strings.Contains(ps[0].Message, tc.wantMsg) {
				t.Errorf("problem = %+v, want %s with %q", ps[0], tc.wantVar, tc.wantMsg)
			}
			if !strings.Contains(err.Error(), tc.wantVar+": ") {
				t.Errorf("error %q does not name %s", err, tc.wantVar)
			}
		})
	}
}

func TestLoadConfigReportsEveryProblemOnce(t *testing.T) {
	_, err := LoadConfig(envOf(map[string]string{
		"PORT": "abc", "JWT_SECRET": "short", "LOG_LEVEL": "loud", "WRITE_BATCH_WAIT": "5s",
		"DB_POOL_MAX": "x", "MAX_PAGE_SIZE": "many",
	}))
	ps := problemsOf(t, err)
	count := map[string]int{}
	for _, p := range ps {
		count[p.Var]++
	}
	want := map[string]int{"PORT": 1, "JWT_SECRET": 1, "LOG_LEVEL": 1, "WRITE_BATCH_WAIT": 1, "DB_POOL_MAX": 1, "MAX_PAGE_SIZE": 1}
	if !reflect.DeepEqual(count, want) {
		t.Errorf("problems per variable = %v, want %v (%v)", count, want, err)
	}
}

func TestJWTSecret(t *testing.T) {
	for _, tc := range []struct {
		name, nodeEnv, secret string
		ok                    bool
	}{
		{"31 bytes refused", "development", strings.Repeat("x", 31), false},
		{"32 bytes accepted", "production", strings.Repeat("x", 32), true},
		{"32 bytes counted in bytes, not runes", "production", strings.Repeat("é", 16), true},
		{"default placeholder accepted in development", "development", "", true},
		{"default placeholder accepted in test", "test", "", true},
		{"default placeholder refused in production", "production", "", false},
		{"placeholder given explicitly refused in production", "production", "your-super-secret-jwt-key-change-in-production", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadConfig(envOf(map[string]string{"NODE_ENV": tc.nodeEnv, "JWT_SECRET": tc.secret}))
			if tc.ok != (err == nil) {
				t.Fatalf("err = %v, want ok=%v", err, tc.ok)
			}
			if err != nil {
				if ps := problemsOf(t, err); len(ps) != 1 || ps[0].Var != "JWT_SECRET" {
					t.Errorf("problems = %+v, want one for JWT_SECRET", ps)
				}
				if tc.secret != "" && strings.Contains(err.Error(), tc.secret) {
					t.Errorf("error %q shows the secret", err)
				}
			}
		})
	}
}

// TestJWTKeys: JWT_ALGORITHMS and the keys its algorithms need.
func TestJWTKeys(t *testing.T) {
	rsaPEM := func(bits int) string {
		k, err := rsa.GenerateKey(rand.Reader, bits)
		if err != nil {
			t.Fatal(err)
		}
		return pemOf(t, &k.PublicKey)
	}
	ecPEM := func(c elliptic.Curve) string {
		k, err := ecdsa.GenerateKey(c, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return pemOf(t, &k.PublicKey)
	}
	rsa2048, p256 := rsaPEM(2048), ecPEM(elliptic.P256())
	short := "short-secret"
	for _, tc := range []struct {
		name    string
		env     map[string]string
		problem string // the variable named, "" when the configuration is valid
	}{
		{"none refused", map[string]string{"JWT_ALGORITHMS": "none"}, "JWT_ALGORITHMS"},
		{"HS512 refused", map[string]string{"JWT_ALGORITHMS": "HS512"}, "JWT_ALGORITHMS"},
		{"empty list refused", map[string]string{"JWT_ALGORITHMS": " , "}, "JWT_ALGORITHMS"},
		{"RS256 without a key", map[string]string{"JWT_ALGORITHMS": "RS256"}, "JWT_ALGORITHMS"},
		{"RS256 with a PEM", map[string]string{"JWT_ALGORITHMS": "RS256", "JWT_PUBLIC_KEY": rsa2048}, ""},
		{"RS256 with a one-line PEM", map[string]string{"JWT_ALGORITHMS": "RS256", "JWT_PUBLIC_KEY": strings.ReplaceAll(rsa2048, "\n", `\n`)}, ""},
		{"RS256 with a JWKS", map[string]string{"JWT_ALGORITHMS": "RS256", "JWT_JWKS_URL": "https://auth/jwks"}, ""},
		{"both a PEM and a JWKS", map[string]string{"JWT_ALGORITHMS": "RS256", "JWT_PUBLIC_KEY": rsa2048, "JWT_JWKS_URL": "https://auth/jwks"}, "JWT_PUBLIC_KEY"},
		{"JWKS URL not http", map[string]string{"JWT_ALGORITHMS": "RS256", "JWT_JWKS_URL": "file:///etc/jwks"}, "JWT_JWKS_URL"},
		{"RSA key for ES256", map[string]string{"JWT_ALGORITHMS": "ES256", "JWT_PUBLIC_KEY": rsa2048}, "JWT_PUBLIC_KEY"},
		{"P-384 key for ES256", map[string]string{"JWT_ALGORITHMS": "ES256", "JWT_PUBLIC_KEY": ecPEM(elliptic.P384())}, "JWT_PUBLIC_KEY"},
		{"ES256 with a P-256 PEM", map[string]string{"JWT_ALGORITHMS": "ES256", "JWT_PUBLIC_KEY": p256}, ""},
		{"RSA key under 2048 bits", map[string]string{"JWT_ALGORITHMS": "RS256", "JWT_PUBLIC_KEY": rsaPEM(1024)}, "JWT_PUBLIC_KEY"},
		{"not PEM", map[string]string{"JWT_ALGORITHMS": "RS256", "JWT_PUBLIC_KEY": "ssh-rsa AAAA"}, "JWT_PUBLIC_KEY"},
		{"a key but no asymmetric algorithm", map[string]string{"JWT_PUBLIC_KEY": rsa2048}, "JWT_PUBLIC_KEY"},
		{"short secret refused with HS256", map[string]string{"JWT_SECRET": short}, "JWT_SECRET"},
		{"short secret ignored without HS256", map[string]string{"JWT_ALGORITHMS": "RS256", "JWT_PUBLIC_KEY": rsa2048, "JWT_SECRET": short}, ""},
		{"placeholder ignored in production without HS256", map[string]string{"NODE_ENV": "production", "JWT_ALGORITHMS": "ES256", "JWT_PUBLIC_KEY": p256}, ""},
		{"refresh interval under 1s", map[string]string{"JWT_JWKS_REFRESH_INTERVAL": "10ms"}, "JWT_JWKS_REFRESH_INTERVAL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := LoadConfig(envOf(tc.env))
			if tc.problem == "" {
				if err != nil {
					t.Fatal(err)
				}
				if _, err := c.JWTKey(); err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted %v", tc.env)
			}
			ps := problemsOf(t, err)
			if len(ps) != 1 || ps[0].Var != tc.problem {
				t.Errorf("problems = %+v, want one for %s", ps, tc.problem)
			}
		})
	}
}

func pemOf(t *testing.T, pub any) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// TestNoEffectVariablesExist: every variable said to have no effect is one
// LoadConfig reads (and so is validated), and none is used by run.
func TestNoEffectVariablesExist(t *testing.T) {
	read := map[string]bool{}
	for _, v := range configVars() {
		read[v.name] = true
	}
	for _, v := range noEffect {
		if !read[v.name] || v.why == "" {
			t.Errorf("%s: read %v, why %q", v.name, read[v.name], v.why)
		}
	}
}

func TestTrustedProxies(t *testing.T) {
	for _, tc := range []struct {
		value string
		want  string // the prefixes, space-separated; "error" when refused
	}{
		{"", ""},
		{"false", ""},
		{"10.0.0.0/8", "10.0.0.0/8"},
		{"10.1.2.3/8, 192.0.2.1, ::1", "10.0.0.0/8 192.0.2.1/32 ::1/128"},
		{"::ffff:192.0.2.1", "192.0.2.1/32"},
		{"true", "error"},
		{"10.0.0.0/33", "error"},
		{"proxy.local", "error"},
	} {
		t.Run(tc.value, func(t *testing.T) {
			c, err := LoadConfig(envOf(map[string]string{"TRUST_PROXY": tc.value}))
			if tc.want == "error" {
				if err == nil {
					t.Fatalf("accepted TRUST_PROXY=%q", tc.value)
				}
				if ps := problemsOf(t, err); len(ps) != 1 || ps[0].Var != "TRUST_PROXY" {
					t.Errorf("problems = %+v", ps)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			ps, err := c.TrustedProxies()
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, p := range ps {
				got = append(got, p.String())
			}
			if strings.Join(got, " ") != tc.want {
				t.Errorf("TrustedProxies = %v, want %s", got, tc.want)
			}
		})
	}
}

func TestDatabaseURL(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		want string
		// what pgx must read back from it
		host, user, password, database, sslmode string
		port                                    uint16
	}{
		{
			name: "default", want: "postgresql://lms_user:lms_password@localhost:5432/lms_users",
			host: "localhost", port: 5432, user: "lms_user", password: "lms_password", database: "lms_users",
		},
		{
			name: "DATABASE_URL wins over parts",
			env:  map[string]string{"DATABASE_URL": "postgres://a:b@db.internal:6432/app?sslmode=verify-full", "DB_HOST": "ignored"},
			want: "postgres://a:b@db.internal:6432/app?sslmode=verify-full",
			host: "db.internal", port: 6432, user: "a", password: "b", database: "app", sslmode: "verify-full",
		},
		{
			name: "parts without DATABASE_URL",
			env:  map[string]string{"DB_HOST": "pg", "DB_NAME": "users"},
			want: "postgres://lms_user:lms_password@pg:5432/users?sslmode=disable",
			host: "pg", port: 5432, user: "lms_user", password: "lms_password", database: "users", sslmode: "disable",
		},
		{
			name: "parts escaped, IPv6 host, DB_SSL true",
			env: map[string]string{
				"DB_HOST": "::1", "DB_PORT": "55432", "DB_USER": "svc@corp", "DB_PASSWORD": "p@ss:w/rd?#%&=$x",
				"DB_NAME": "my db/1", "DB_SSL": "true",
			},
			want: "postgres://svc%40corp:p%40ss%3Aw%2Frd%3F%23%25&=$x@[::1]:55432/my%20db%2F1?sslmode=require",
			host: "::1", port: 55432, user: "svc@corp", password: "p@ss:w/rd?#%&=$x", database: "my db/1", sslmode: "require",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := mustLoad(t, tc.env)
			got := c.DatabaseURL()
			if got != tc.want {
				t.Errorf("DatabaseURL() = %q, want %q", got, tc.want)
			}
			pc, err := pgconn.ParseConfig(got)
			if err != nil {
				t.Fatalf("pgconn.ParseConfig(%q): %v", got, err)
			}
			if pc.Host != tc.host || pc.Port != tc.port || pc.User != tc.user || pc.Password != tc.password || pc.Database != tc.database {
				t.Errorf("pgx reads host %q port %d user %q password %q database %q", pc.Host, pc.Port, pc.User, pc.Password, pc.Database)
			}
			if tc.sslmode == "disable" && pc.TLSConfig != nil {
				t.Error("sslmode=disable but pgx configured TLS")
			}
			if tc.sslmode == "require" && pc.TLSConfig == nil {
				t.Error("sslmode=require but pgx configured no TLS")
			}
		})
	}
}

func TestRedisURL(t *testing.T) {
	for _, tc := range []struct {
		name          string
		env           map[string]string
		wantURL, addr string
		password      string
		db            int
		tls           bool
	}{
		{name: "default", wantURL: "redis://localhost:6379", addr: "localhost:6379"},
		{
			name: "REDIS_URL with TLS and no port", env: map[string]string{"REDIS_URL": "rediss://:pw@cache.example.com/3"},
			wantURL: "rediss://:pw@cache.example.com/3", addr: "cache.example.com:6379", password: "pw", db: 3, tls: true,
		},
		{
			name: "REDIS_URL wins over parts", env: map[string]string{"REDIS_URL": "redis://127.0.0.1:56379/0", "REDIS_HOST": "x"},
			wantURL: "redis://127.0.0.1:56379/0", addr: "127.0.0.1:56379",
		},
		{
			name: "parts, password escaped", env: map[string]string{"REDIS_HOST": "r.local", "REDIS_PORT": "6380", "REDIS_PASSWORD": "p@ss/w:rd#", "REDIS_DB": "4"},
			wantURL: "redis://:p%40ss%2Fw%3Ard%23@r.local:6380/4", addr: "r.local:6380", password: "p@ss/w:rd#", db: 4,
		},
		{
			name: "parts without password", env: map[string]string{"REDIS_DB": "2"},
			wantURL: "redis://localhost:6379/2", addr: "localhost:6379", db: 2,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := mustLoad(t, tc.env)
			if got := c.RedisURL(); got != tc.wantURL {
				t.Errorf("RedisURL() = %q, want %q", got, tc.wantURL)
			}
			if got := c.RedisAddr(); got != tc.addr {
				t.Errorf("RedisAddr() = %q, want %q", got, tc.addr)
			}
			opt, err := rueidis.ParseURL(c.RedisURL())
			if err != nil {
				t.Fatalf("rueidis.ParseURL(%q): %v", c.RedisURL(), err)
			}
			if opt.Password != tc.password || opt.SelectDB != tc.db || (opt.TLSConfig != nil) != tc.tls {
				t.Errorf("rueidis reads password %q db %d tls %v", opt.Password, opt.SelectDB, opt.TLSConfig != nil)
			}
			if len(opt.InitAddress) != 1 || opt.InitAddress[0] != tc.addr {
				t.Errorf("rueidis reads addresses %q, want [%s]", opt.InitAddress, tc.addr)
			}
		})
	}
}

func TestRabbitURL(t *testing.T) {
	for _, tc := range []struct {
		name                  string
		env                   map[string]string
		want                  string
		user, password, vhost string
		port                  int
	}{
		{name: "default", want: "amqp://localhost:5672", user: "guest", password: "guest", vhost: "/", port: 5672},
		{
			name: "parts with the default vhost", env: map[string]string{"RABBITMQ_HOST": "mq"},
			want: "amqp://guest:guest@mq:5672/%2F", user: "guest", password: "guest", vhost: "/", port: 5672,
		},
		{
			name: "parts escaped", env: map[string]string{
				"RABBITMQ_USERNAME": "svc@lms", "RABBITMQ_PASSWORD": "a/b:c@d", "RABBITMQ_VHOST": "lms/prod", "RABBITMQ_PORT": "55672",
			},
			want: "amqp://svc%40lms:a%2Fb%3Ac%40d@localhost:55672/lms%2Fprod", user: "svc@lms", password: "a/b:c@d", vhost: "lms/prod", port: 55672,
		},
		{
			name: "RABBITMQ_URL wins over parts", env: map[string]string{"RABBITMQ_URL": "amqp://u:p@h:1/v", "RABBITMQ_VHOST": "x"},
			want: "amqp://u:p@h:1/v", user: "u", password: "p", vhost: "v", port: 1,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := mustLoad(t, tc.env)
			got := c.RabbitURL()
			if got != tc.want {
				t.Errorf("RabbitURL() = %q, want %q", got, tc.want)
			}
			u, err := amqp.ParseURI(got)
			if err != nil {
				t.Fatalf("amqp.ParseURI(%q): %v", got, err)
			}
			if u.Username != tc.user || u.Password != tc.password || u.Vhost != tc.vhost || u.Port != tc.port {
				t.Errorf("amqp091 reads user %q password %q vhost %q port %d", u.Username, u.Password, u.Vhost, u.Port)
			}
		})
	}
}

func TestDurations(t *testing.T) {
	for _, tc := range []struct {
		name, value string
		get         func(Config) time.Duration
		want        time.Duration
	}{
		{"WRITE_BATCH_WAIT", "500us", func(c Config) time.Duration { return c.WriteBatchWait }, 500 * time.Microsecond},
		{"WRITE_BATCH_WAIT", "1s", func(c Config) time.Duration { return c.WriteBatchWait }, time.Second},
		{"ACTOR_IDLE_TIMEOUT", "1h30m", func(c Config) time.Duration { return c.ActorIdleTimeout }, 90 * time.Minute},
		{"SHUTDOWN_TIMEOUT", "1.5s", func(c Config) time.Duration { return c.ShutdownTimeout }, 1500 * time.Millisecond},
		{"REQUEST_TIMEOUT", "250ms", func(c Config) time.Duration { return c.RequestTimeout }, 250 * time.Millisecond},
		{"HEALTH_CACHE_TTL", "0", func(c Config) time.Duration { return c.HealthCacheTTL }, 0},
		{"RATE_LIMIT_WINDOW", "1500", func(c Config) time.Duration { return c.RateLimitWindow.Duration() }, 1500 * time.Millisecond},
		{"HEALTH_CHECK_TIMEOUT", "+20", func(c Config) time.Duration { return c.HealthCheckTimeout.Duration() }, 20 * time.Millisecond},
		{"HEALTH_CHECK_INTERVAL", "86400000", func(c Config) time.Duration { return c.HealthCheckInterval.Duration() }, 24 * time.Hour},
		{"CACHE_TTL_USER_SEARCH", "60", func(c Config) time.Duration { return c.CacheTTLUserSearch.Duration() }, time.Minute},
		{"JWT_EXPIRES_IN", "7d", func(c Config) time.Duration { return c.JWTExpiresIn.Duration() }, 7 * 24 * time.Hour},
		{"JWT_EXPIRES_IN", "1d12h", func(c Config) time.Duration { return c.JWTExpiresIn.Duration() }, 36 * time.Hour},
		{"JWT_EXPIRES_IN", "90m", func(c Config) time.Duration { return c.JWTExpiresIn.Duration() }, 90 * time.Minute},
		{"JWT_EXPIRES_IN", "1.5h", func(c Config) time.Duration { return c.JWTExpiresIn.Duration() }, 90 * time.Minute},
		{"JWT_REFRESH_EXPIRES_IN", "2w", func(c Config) time.Duration { return c.JWTRefreshExpiresIn.Duration() }, 14 * 24 * time.Hour},
		{"JWT_REFRESH_EXPIRES_IN", "500ms", func(c Config) time.Duration { return c.JWTRefreshExpiresIn.Duration() }, 500 * time.Millisecond},
	} {
		t.Run(tc.name+"="+tc.value, func(t *testing.T) {
			c := mustLoad(t, map[string]string{tc.name: tc.value})
			if got := tc.get(c); got != tc.want {
				t.Errorf("%s=%s gives %v, want %v", tc.name, tc.value, got, tc.want)
			}
		})
	}
}

func TestParseLifetime(t *testing.T) {
	for _, s := range []string{"", "7", "d", "7x", "7 d", " 7d", ".5h", "5.h", "-1h", "1h-", "1h2", "1e3s", "1.2.3h",
		"99999999999999999999w", strings.Repeat("1", 65) + "s"} {
		t.Run("refuses "+s, func(t *testing.T) {
			if d, err := ParseLifetime(s); err == nil {
				t.Errorf("ParseLifetime(%q) = %v, want an error", s, d)
			}
		})
	}
	t.Run("String gives days when whole", func(t *testing.T) {
		for d, want := range map[time.Duration]string{
			24 * time.Hour: "1d", 7 * 24 * time.Hour: "7d", 36 * time.Hour: "36h0m0s", 90 * time.Minute: "1h30m0s",
		} {
			if got := Lifetime(d).String(); got != want {
				t.Errorf("Lifetime(%v).String() = %q, want %q", d, got, want)
			}
		}
	})
}

func TestLoadConfigValues(t *testing.T) {
	t.Run("lists are trimmed and empty items dropped", func(t *testing.T) {
		c := mustLoad(t, map[string]string{
			"CORS_ORIGIN": " http://a.example.com , https://b.example.com:8443,,", "CORS_METHODS": "get, Post",
			"AUDIT_SENSITIVE_FIELDS": "password, email ,",
		})
		if want := []string{"http://a.example.com", "https://b.example.com:8443"}; !reflect.DeepEqual(c.CORSOrigin, want) {
			t.Errorf("CORSOrigin = %q, want %q", c.CORSOrigin, want)
		}
		if want := []string{"GET", "POST"}; !reflect.DeepEqual(c.CORSMethods, want) {
			t.Errorf("CORSMethods = %q, want %q", c.CORSMethods, want)
		}
		if want := []string{"password", "email"}; !reflect.DeepEqual(c.AuditSensitiveFields, want) {
			t.Errorf("AuditSensitiveFields = %q, want %q", c.AuditSensitiveFields, want)
		}
	})
	t.Run("values are literal, not expanded", func(t *testing.T) {
		c := mustLoad(t, map[string]string{"DB_PASSWORD": "pa$$word${HOME}", "HOME": "/root"})
		if c.DBPassword != "pa$$word${HOME}" {
			t.Errorf("DBPassword = %q", c.DBPassword)
		}
	})
	for _, tc := range []struct {
		level string
		want  slog.Level
	}{
		{"error", slog.LevelError}, {"WARN", slog.LevelWarn}, {" info ", slog.LevelInfo}, {"debug", slog.LevelDebug},
		{"http", slog.LevelDebug}, {"verbose", slog.LevelDebug}, {"silly", slog.LevelDebug},
	} {
		t.Run("LOG_LEVEL="+tc.level, func(t *testing.T) {
			if got := mustLoad(t, map[string]string{"LOG_LEVEL": tc.level}).SlogLevel(); got != tc.want {
				t.Errorf("SlogLevel() = %v, want %v", got, tc.want)
			}
		})
	}
	t.Run("bools take strconv's spellings", func(t *testing.T) {
		c := mustLoad(t, map[string]string{"DB_SSL": "1", "HELMET_ENABLED": "FALSE", "AUDIT_ENABLED": "f"})
		if !c.DBSSL || c.HelmetEnabled || c.AuditEnabled {
			t.Errorf("DBSSL %v HelmetEnabled %v AuditEnabled %v", c.DBSSL, c.HelmetEnabled, c.AuditEnabled)
		}
	})
	t.Run("an empty value means the default", func(t *testing.T) {
		c := mustLoad(t, map[string]string{"PORT": "", "DATABASE_URL": ""})
		if c.Port != 3002 || c.DatabaseURL() != "postgresql://lms_user:lms_password@localhost:5432/lms_users" {
			t.Errorf("Port %d DatabaseURL %q", c.Port, c.DatabaseURL())
		}
	})
}

func TestRedacted(t *testing.T) {
	secrets := []string{"jwt-secret-that-is-long-enough-0123456789", "db-pass-1", "redis-pass-2", "mq-pass-3", "url-pass-4", "url-pass-5", "url-pass-6"}
	env := map[string]string{
		"JWT_SECRET": secrets[0], "DB_PASSWORD": secrets[1], "REDIS_PASSWORD": secrets[2], "RABBITMQ_PASSWORD": secrets[3],
		"DATABASE_URL": "postgres://u:" + secrets[4] + "@h/db", "REDIS_URL": "redis://:" + secrets[5] + "@h:6379/0",
		"RABBITMQ_URL": "amqp://u:" + secrets[6] + "@h/",
	}
	t.Run("URLs given", func(t *testing.T) {
		c := mustLoad(t, env)
		r := c.Redacted()
		for _, v := range configVars() {
			if _, ok := r[v.name]; !ok {
				t.Errorf("Redacted() lacks %s", v.name)
			}
		}
		if r["JWT_SECRET"] != "[REDACTED]" || r["PORT"] != "3002" || r["DATABASE_URL"] != "postgres://u:xxxxx@h/db" {
			t.Errorf("JWT_SECRET %q PORT %q DATABASE_URL %q", r["JWT_SECRET"], r["PORT"], r["DATABASE_URL"])
		}
		if r["database"] != "postgres://u:xxxxx@h/db" {
			t.Errorf("database = %q", r["database"])
		}
		var buf bytes.Buffer
		slog.New(slog.NewJSONHandler(&buf, nil)).Info("starting", "config", c)
		out := buf.String()
		for _, s := range secrets {
			if strings.Contains(out, s) {
				t.Errorf("log line shows secret %q: %s", s, out)
			}
		}
		if !strings.Contains(out, `"PORT":"3002"`) || !strings.Contains(out, `"JWT_SECRET":"[REDACTED]"`) {
			t.Errorf("log line lacks the settings: %s", out)
		}
	})
	t.Run("URLs built from parts", func(t *testing.T) {
		parts := map[string]string{}
		for k, v := range env {
			if !strings.HasSuffix(k, "_URL") {
				parts[k] = v
			}
		}
		r := mustLoad(t, parts).Redacted()
		for k, v := range r {
			for _, s := range secrets {
				if strings.Contains(v, s) || strings.Contains(v, url.QueryEscape(s)) {
					t.Errorf("Redacted()[%s] = %q shows a secret", k, v)
				}
			}
		}
		if r["rabbitmq"] != "amqp://guest:xxxxx@localhost:5672/%2F" {
			t.Errorf("rabbitmq = %q", r["rabbitmq"])
		}
	})
}

func TestConfigVarsAreUnique(t *testing.T) {
	seen := map[string]string{}
	for _, v := range configVars() {
		if f, dup := seen[v.name]; dup {
			t.Errorf("%s is read by both %s and %s", v.name, f, v.field)
		}
		seen[v.name] = v.field
	}
	if want := 66 + 6 + 4 + 1 + 4 + 6 + 1 + 3 + 2 + 1 + 2 + 1 + 7 + 3 + 1 + 1; len(seen) != want { // the spec's block, plus ACTOR_*, WRITE_BATCH_*, *_TIMEOUT, JWT_ALGORITHMS and its keys, TRUST_PROXY, HTTP_* limits and HEALTH_CACHE_TTL, CLUSTER_*/ETCD_*, EVENT_RETENTION, QUOTA_*, RATE_LIMIT_LEASE_FRACTION, SNAPSHOT_WRITE_DELAY, QUOTA_SESSIONS_PER_USER, POD_NAME/POD_NAMESPACE, ERASURE_COOL_OFF, the 7 retention variables, JOB_* (bulk jobs), GC_HEAP_FLOOR_MB, TOKEN_CACHE_SIZE
		t.Errorf("%d variables, want %d", len(seen), want)
	}
}

// FuzzLoadConfig feeds arbitrary values to a few variables of every kind: LoadConfig
// must never panic, and either succeed with a valid Config or fail naming variables.
func FuzzLoadConfig(f *testing.F) {
	f.Add("3002", "10", "60000", "24h", "2ms", "postgres://u:p@h/db", "info", "http://localhost:3000")
	f.Add("abc", "-1", "1m", "3600", "5s", "mysql://x", "loud", " , ")
	f.Fuzz(func(t *testing.T, port, poolMax, window, expires, batchWait, dbURL, level, origin string) {
		env := map[string]string{
			"PORT": port, "DB_POOL_MAX": poolMax, "RATE_LIMIT_WINDOW": window, "JWT_EXPIRES_IN": expires,
			"WRITE_BATCH_WAIT": batchWait, "DATABASE_URL": dbURL, "LOG_LEVEL": level, "CORS_ORIGIN": origin,
		}
		c, err := LoadConfig(envOf(env))
		if err != nil {
			known := map[string]bool{}
			for _, v := range configVars() {
				known[v.name] = true
			}
			ps := problemsOf(t, err)
			if len(ps) == 0 {
				t.Fatal("a *ConfigError without problems")
			}
			for _, p := range ps {
				if !known[p.Var] || p.Message == "" {
					t.Errorf("problem %+v does not name a variable", p)
				}
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("LoadConfig accepted a Config that Validate refuses: %v", err)
		}
		if c.Port < 1 || c.Port > 65535 || c.DBPoolMax < c.DBPoolMin || c.WriteBatchWait < 0 || c.WriteBatchWait > time.Second ||
			c.RateLimitWindow <= 0 || c.JWTExpiresIn <= 0 || len(c.CORSOrigin) == 0 {
			t.Errorf("accepted out-of-range values: %+v", c)
		}
		if _, err := url.Parse(c.DatabaseURL()); err != nil {
			t.Errorf("DatabaseURL() %q does not parse: %v", c.DatabaseURL(), err)
		}
	})
}

// TestLoadConfigK8sProvider: CLUSTER_PROVIDER=k8s is accepted (membership and fence
// live on the API server, so ETCD_ENDPOINTS is not checked) and reads the Pod's
// name and namespace.
func TestLoadConfigK8sProvider(t *testing.T) {
	c := mustLoad(t, map[string]string{"CLUSTER_PROVIDER": "k8s", "CLUSTER_NAME": "users.v2", "ETCD_ENDPOINTS": "not-host-port",
		"POD_NAME": "userservice-0", "POD_NAMESPACE": "lms"})
	if c.ClusterProvider != "k8s" || c.PodName != "userservice-0" || c.PodNamespace != "lms" || c.ClusterName != "users.v2" {
		t.Errorf("config = %q %q %q %q", c.ClusterProvider, c.PodName, c.PodNamespace, c.ClusterName)
	}
	for _, bad := range []string{"", "-a", "a_", strings.Repeat("a", 64), "a:b"} {
		if kubeLabelValue(bad) {
			t.Errorf("kubeLabelValue(%q) = true", bad)
		}
	}
}
