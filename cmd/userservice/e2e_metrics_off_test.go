package main

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// TestMetricsDisabledAndNoEffectWarnings: METRICS_ENABLED=false takes /metrics
// away (404 in the envelope, and no METRICS_PORT listener), and each variable
// that has no effect in this service, when set, gets a warning at start.
func TestMetricsDisabledAndNoEffectWarnings(t *testing.T) {
	st := newStack(t)
	metricsPort := freePort(t)
	svc := st.start(t, map[string]string{
		"METRICS_ENABLED": "false", "METRICS_PORT": fmt.Sprint(metricsPort),
		"BCRYPT_ROUNDS": "10", "COURSE_SERVICE_URL": "http://courses:3003", "CACHE_TTL_USER_PREFERENCES": "60",
	})
	svc.do(t, "GET", "/metrics", "", nil).fail(t, http.StatusNotFound, "")
	svc.do(t, "GET", "/health", "", nil)
	if resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort)); err == nil {
		resp.Body.Close()
		t.Errorf("METRICS_PORT serves /metrics (%d) with METRICS_ENABLED=false", resp.StatusCode)
	}
	eventually(t, "the warnings", func() error { // log lines are flushed every 100 ms
		for _, v := range []string{"BCRYPT_ROUNDS", "COURSE_SERVICE_URL", "CACHE_TTL_USER_PREFERENCES"} {
			if !strings.Contains(svc.logs.String(), `"msg":"configuration variable has no effect in this service","variable":"`+v+`"`) {
				return fmt.Errorf("no warning for %s", v)
			}
		}
		return nil
	})
	logs := svc.logs.String()
	for _, v := range []string{"JWT_EXPIRES_IN", "MAX_FILE_SIZE", "AUTH_SERVICE_URL"} { // not set
		if strings.Contains(logs, `"variable":"`+v+`"`) {
			t.Errorf("a warning for %s, which is not set", v)
		}
	}

	// With metrics on (the default), /metrics answers.
	on := st.start(t, nil)
	if r := on.do(t, "GET", "/metrics", "", nil); r.Status != http.StatusOK {
		t.Errorf("%s", r)
	}
}
