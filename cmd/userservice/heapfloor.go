package main

import (
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"

	vm "github.com/VictoriaMetrics/metrics"
)

// The heap floor (GC_HEAP_FLOOR_MB, docs/design.md "The heap floor").
//
// With GOGC=100 the garbage collector runs each time the heap has grown by the
// live data: a node holding 100 MB of users collects every 100 MB allocated,
// and every write allocates ~20 KB (pgx's buffers, JSON, the event), so under
// load it marks its whole live heap more than once a second — a fifth of the
// service's CPU per write in the PUT /me profile. The floor lets the heap grow
// to at least floor bytes before a collection: after every collection GOGC is
// set so that the next one starts at max(floor, live × (1 + GOGC/100)), the
// operator's GOGC (100 unless set) being the least. A node whose live data
// reaches floor / 2 collects exactly as with plain GOGC, so the floor costs
// memory only where the heap is small, and never more than floor. A memory
// limit still bounds the heap: the floor is capped at half of GOMEMLIMIT and
// half of the container's (cgroup) limit.

// maxGCPercent bounds the GOGC the floor sets (with a live heap of a few MB at
// start, floor / live would be in the thousands; the memory the floor allows is
// the bound that matters, this one only keeps the figure sane).
const maxGCPercent = 10_000

var gcPercentGauge = vm.NewGauge("user_service_gc_percent", nil)

// heapFloor keeps GOGC at what the floor needs; see the comment above.
type heapFloor struct {
	floor   uint64 // bytes
	base    int    // the operator's GOGC
	stopped bool   // under floorMu
}

// The process's heap floor: GOGC is the process's, so services run in one
// process (the end-to-end tests) share the first one started.
var (
	floorMu     sync.Mutex
	floorActive *heapFloor
	floorUsers  int
)

// startHeapFloor starts the heap floor of floorMB MiB and returns what stops it.
// It does nothing (and stops nothing) when floorMB is 0 or the collector is off
// (GOGC=off). While one runs in the process, another start shares it.
func startHeapFloor(floorMB int) (stop func()) {
	floorMu.Lock()
	defer floorMu.Unlock()
	if floorActive == nil {
		h := newHeapFloor(uint64(floorMB) << 20)
		if h == nil {
			gcPercentGauge.Set(float64(currentGCPercent()))
			return func() {}
		}
		floorActive = h
		h.tune()
		h.arm()
	}
	floorUsers++
	var once sync.Once
	return func() {
		once.Do(func() {
			floorMu.Lock()
			defer floorMu.Unlock()
			if floorUsers--; floorUsers > 0 {
				return
			}
			h := floorActive
			floorActive = nil
			h.stopped = true
			debug.SetGCPercent(h.base)
			gcPercentGauge.Set(float64(h.base))
		})
	}
}

// newHeapFloor returns the floor for floor bytes, capped at half the memory
// limit (GOMEMLIMIT, and the container's: a floor must never be what gets the
// process killed), or nil when there is nothing to do.
func newHeapFloor(floor uint64) *heapFloor {
	base := currentGCPercent()
	if floor == 0 || base < 0 {
		return nil
	}
	for _, limit := range []uint64{readMetric("/gc/gomemlimit:bytes"), cgroupMemoryLimit()} {
		if limit > 0 && limit < noLimit {
			floor = min(floor, limit/2)
		}
	}
	return &heapFloor{floor: floor, base: base}
}

// arm calls tune after the next collection, and again after each one until
// stopped: a finalizer runs once the collector found its object unreachable.
func (h *heapFloor) arm() {
	sentinel := &struct{ _ [16]byte }{} // not a tiny allocation, whose finalizer may never run
	runtime.SetFinalizer(sentinel, func(any) {
		floorMu.Lock() // so that a stop's GOGC is the last word
		defer floorMu.Unlock()
		if h.stopped {
			return
		}
		h.tune()
		h.arm()
	})
}

// tune sets GOGC for the live heap the last collection found.
func (h *heapFloor) tune() {
	live := readMetric("/gc/heap/live:bytes")
	if live == 0 { // before the first collection: what is allocated now
		live = readMetric("/memory/classes/heap/objects:bytes")
	}
	p := gcPercentFor(h.floor, live, h.base)
	debug.SetGCPercent(p)
	gcPercentGauge.Set(float64(p))
}

// gcPercentFor is the GOGC that starts the next collection at floor bytes of
// heap when live bytes are live, never below base nor above maxGCPercent.
func gcPercentFor(floor, live uint64, base int) int {
	if floor <= live {
		return base
	}
	p := maxGCPercent
	if live > 0 { // else nothing live yet: the bound
		p = int(min((floor-live)*100/live, maxGCPercent))
	}
	return max(base, p)
}

// currentGCPercent is GOGC as the runtime has it (GOGC or SetGCPercent; -1 for off).
func currentGCPercent() int {
	return int(int64(readMetric("/gc/gogc:percent")))
}

func readMetric(name string) uint64 {
	s := []metrics.Sample{{Name: name}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

// cgroupMemoryLimit is the memory limit of the process's cgroup (v2's
// memory.max, or v1's memory.limit_in_bytes), 0 when there is none or it
// cannot be read.
func cgroupMemoryLimit() uint64 { return cgroupMemoryLimitAt("/proc/self/cgroup", "/sys/fs/cgroup") }

// cgroupMemoryLimitAt reads the limit from the process's cgroup file and the
// cgroup file system mounted at root.
func cgroupMemoryLimitAt(cgroupFile, root string) uint64 {
	self, err := os.ReadFile(cgroupFile) // "0::/path" (v2), "4:memory:/path" (v1)
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(self), "\n") {
		var file string
		if path, ok := strings.CutPrefix(line, "0::"); ok {
			file = filepath.Join(root, path, "memory.max")
		} else if _, path, ok := strings.Cut(line, ":memory:"); ok {
			file = filepath.Join(root, "memory", path, "memory.limit_in_bytes")
		} else {
			continue
		}
		b, err := os.ReadFile(file)
		if err != nil {
			continue // v2's line on a v1 host names no memory.max
		}
		v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64) // v2 "max": no limit
		if err == nil && v < noLimit {
			return v
		}
	}
	return 0
}

// noLimit: a limit this large is "none" (v1 reports a page-rounded MaxInt64).
const noLimit = 1 << 60
