package main

import (
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

func TestGCPercentFor(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct {
		name        string
		floor, live uint64
		base, want  int
	}{
		{"small heap: the next collection at the floor", 512 * mib, 128 * mib, 100, 300},
		{"a heap past half the floor: the operator's GOGC", 512 * mib, 300 * mib, 100, 100},
		{"a heap past the floor", 512 * mib, 600 * mib, 100, 100},
		{"a higher GOGC stays", 512 * mib, 128 * mib, 500, 500},
		{"a tiny heap: bounded", 512 * mib, 1 * mib, 100, maxGCPercent},
		{"nothing live yet: bounded", 512 * mib, 0, 100, maxGCPercent},
	} {
		if got := gcPercentFor(tc.floor, tc.live, tc.base); got != tc.want {
			t.Errorf("%s: gcPercentFor(%d MiB, %d MiB, %d) = %d, want %d", tc.name, tc.floor/mib, tc.live/mib, tc.base, got, tc.want)
		}
	}
}

// TestHeapFloor runs the floor in this process: GOGC follows the live heap after
// each collection, a second start shares the first, and the last stop restores
// the operator's GOGC.
func TestHeapFloor(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))

	t.Run("GOGC follows the live heap", func(t *testing.T) {
		// The floor is set from what this process holds live now (other tests of
		// the package leave some): eight times that and 64 MiB more.
		runtime.GC()
		before := int(readMetric("/gc/heap/live:bytes"))
		floor := 8*before + 64<<20
		stop := startHeapFloor(floor >> 20)
		stop2 := startHeapFloor(16 * floor >> 20) // shares the first: its floor is not taken
		if p := currentGCPercent(); p <= 200 {
			t.Fatalf("GOGC %d with %d MiB live under a %d MiB floor, want more than 200", p, before>>20, floor>>20)
		}
		// More live, up to 2/5 of the floor: the floor is now 2.5 times the heap.
		live := make([]byte, floor*2/5-before)
		for i := range live {
			live[i] = byte(i)
		}
		waitGCPercent(t, func(p int) bool { return p >= 100 && p <= 200 }, "between 100 and 200 with 2/5 of the floor live")
		runtime.KeepAlive(live)
		live = nil
		waitGCPercent(t, func(p int) bool { return p > 200 }, "above 200 once the added bytes are garbage")
		stop2()
		if p := currentGCPercent(); p <= 200 {
			t.Fatalf("GOGC %d after the second start stopped, want the first's floor kept", p)
		}
		stop()
		if p := currentGCPercent(); p != 100 {
			t.Fatalf("GOGC %d after the last stop, want 100 back", p)
		}
		runtime.GC()
		time.Sleep(50 * time.Millisecond) // a stopped floor's finalizer changes nothing
		if p := currentGCPercent(); p != 100 {
			t.Fatalf("GOGC %d after a collection with the floor stopped, want 100", p)
		}
	})

	t.Run("off: GOGC is left alone", func(t *testing.T) {
		stop := startHeapFloor(0)
		if p := currentGCPercent(); p != 100 {
			t.Fatalf("GOGC %d with the floor off, want 100", p)
		}
		stop()
		debug.SetGCPercent(-1)
		stop = startHeapFloor(64)
		if p := currentGCPercent(); p != -1 {
			t.Fatalf("GOGC %d with the collector off (GOGC=off), want it left off", p)
		}
		stop()
		debug.SetGCPercent(100)
	})

	t.Run("a memory limit caps the floor at its half", func(t *testing.T) {
		debug.SetMemoryLimit(200 << 20)
		if h := newHeapFloor(512 << 20); h == nil || h.floor != 100<<20 {
			t.Fatalf("floor %+v under a 200 MiB limit, want 100 MiB", h)
		}
		debug.SetMemoryLimit(1<<63 - 1)
		if h := newHeapFloor(512 << 20); h == nil || h.floor != 512<<20 {
			t.Fatalf("floor %+v without a limit, want 512 MiB", h)
		}
	})
}

// waitGCPercent collects until GOGC satisfies ok (the floor tunes after a
// collection, from the finalizer goroutine), for at most 5 s.
func waitGCPercent(t *testing.T, ok func(int) bool, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
		p := currentGCPercent()
		if ok(p) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("GOGC %d, want %s", p, want)
		}
	}
}

func TestCgroupMemoryLimit(t *testing.T) {
	write := func(t *testing.T, path, data string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name   string
		cgroup string
		files  map[string]string
		want   uint64
	}{
		{"v2 with a limit", "0::/kubepods/pod1/c1\n", map[string]string{"kubepods/pod1/c1/memory.max": "2147483648\n"}, 2 << 30},
		{"v2 without a limit", "0::/\n", map[string]string{"memory.max": "max\n"}, 0},
		{"v1 with a limit", "4:memory:/docker/abc\n0::/\n", map[string]string{"memory/docker/abc/memory.limit_in_bytes": "943718400\n"}, 900 << 20},
		{"v1 without a limit", "4:memory:/x\n0::/\n", map[string]string{"memory/x/memory.limit_in_bytes": "9223372036854771712\n"}, 0},
		{"no cgroup files", "0::/gone\n", nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			write(t, filepath.Join(root, "self-cgroup"), tc.cgroup)
			for p, data := range tc.files {
				write(t, filepath.Join(root, "fs", p), data)
			}
			if got := cgroupMemoryLimitAt(filepath.Join(root, "self-cgroup"), filepath.Join(root, "fs")); got != tc.want {
				t.Errorf("limit %d, want %d", got, tc.want)
			}
		})
	}
}
