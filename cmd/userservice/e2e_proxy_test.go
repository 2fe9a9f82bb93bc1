package main

import (
	"fmt"
	"strings"
	"testing"
)

// TestTrustProxy: the rate limiter (and the log line) knows an anonymous
// client by its connection's peer unless that peer is in TRUST_PROXY; then by
// the rightmost X-Forwarded-For hop that is not a trusted proxy, so what a
// client writes into the header itself buys it nothing.
func TestTrustProxy(t *testing.T) {
	anonymous := func(svc *service, xff string) *response {
		return svc.do(t, "GET", "/api/v1/users/me", "", nil, "X-Forwarded-For", xff)
	}

	t.Run("an untrusted peer cannot spoof X-Forwarded-For", func(t *testing.T) {
		st := newStack(t)
		// The tests connect from 127.0.0.1, which is not a trusted proxy here.
		svc := st.start(t, map[string]string{"RATE_LIMIT_MAX": "3", "TRUST_PROXY": "10.0.0.0/8"})
		for i := range 3 {
			anonymous(svc, fmt.Sprintf("198.51.100.%d", i)).fail(t, 401, "UNAUTHORIZED")
		}
		r := anonymous(svc, "198.51.100.99")
		r.fail(t, 429, "RATE_LIMIT_EXCEEDED")
		if r.Header.Get("Retry-After") == "" {
			t.Errorf("429 without Retry-After")
		}
	})

	t.Run("off by default", func(t *testing.T) {
		st := newStack(t)
		svc := st.start(t, map[string]string{"RATE_LIMIT_MAX": "2"})
		anonymous(svc, "198.51.100.1").fail(t, 401, "UNAUTHORIZED")
		anonymous(svc, "198.51.100.2").fail(t, 401, "UNAUTHORIZED")
		anonymous(svc, "198.51.100.3").fail(t, 429, "RATE_LIMIT_EXCEEDED")
	})

	t.Run("behind a trusted proxy each client has its own budget", func(t *testing.T) {
		st := newStack(t)
		svc := st.start(t, map[string]string{"RATE_LIMIT_MAX": "2", "TRUST_PROXY": "127.0.0.1, 10.0.0.0/8", "LOG_LEVEL": "info"})
		// Client A passes two proxies (10.1.1.1 and us); it spoofs a leftmost hop
		// each time, which must not give it a fresh budget.
		anonymous(svc, "6.6.6.1, 198.51.100.7, 10.1.1.1").fail(t, 401, "UNAUTHORIZED")
		anonymous(svc, "6.6.6.2, 198.51.100.7, 10.1.1.1").fail(t, 401, "UNAUTHORIZED")
		anonymous(svc, "6.6.6.3, 198.51.100.7, 10.1.1.1").fail(t, 429, "RATE_LIMIT_EXCEEDED")
		// Client B, behind the same proxies, is not limited by A.
		anonymous(svc, "203.0.113.5, 10.1.1.1").fail(t, 401, "UNAUTHORIZED")
		anonymous(svc, "203.0.113.5").fail(t, 401, "UNAUTHORIZED")
		anonymous(svc, "203.0.113.5").fail(t, 429, "RATE_LIMIT_EXCEEDED")
		// No header: the proxy itself is the client.
		svc.do(t, "GET", "/api/v1/users/me", "", nil).fail(t, 401, "UNAUTHORIZED")
		eventually(t, "the log line names the client", func() error {
			if logs := svc.logs.String(); !strings.Contains(logs, `"clientIp":"198.51.100.7"`) || !strings.Contains(logs, `"clientIp":"203.0.113.5"`) {
				return fmt.Errorf("no request line with clientIp 198.51.100.7 and 203.0.113.5")
			}
			return nil
		})
	})
}
