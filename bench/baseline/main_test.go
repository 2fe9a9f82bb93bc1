package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	json "github.com/goccy/go-json"
)

func TestBaselineAnswersEveryRoute(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"-addr", addr}, io.Discard) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})

	tests := []struct {
		method, path string
		want         int
	}{
		{http.MethodGet, "/api/v1/users/me", http.StatusOK},
		{http.MethodPut, "/api/v1/users/me/preferences/ui", http.StatusOK},
		{http.MethodPost, "/api/v1/users/me/enrollments", http.StatusCreated},
		{http.MethodGet, "/anything/else?x=1", http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			var resp *http.Response
			deadline := time.Now().Add(5 * time.Second)
			for {
				req, _ := http.NewRequest(tt.method, "http://"+addr+tt.path, strings.NewReader(`{"x":1}`))
				resp, err = http.DefaultClient.Do(req)
				if err == nil || time.Now().After(deadline) {
					break
				}
				time.Sleep(20 * time.Millisecond) // the server is still starting
			}
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Errorf("status %d, want %d", resp.StatusCode, tt.want)
			}
			var env struct {
				Success bool `json:"success"`
				Data    struct {
					ID    string `json:"id"`
					Email string `json:"email"`
				} `json:"data"`
				Timestamp string `json:"timestamp"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&env); err != nil {
				t.Fatal(err)
			}
			if !env.Success || env.Data.ID == "" || env.Data.Email == "" || env.Timestamp == "" {
				t.Errorf("body is not a user envelope: %+v", env)
			}
		})
	}
}
