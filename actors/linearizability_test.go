//go:build !race

// Cluster tests are built without the race detector: protoactor-go's cluster,
// remote and disthash packages race on their own state (BlockList, MemberList,
// disthash's rendezvous table, the etcd provider's shutdown flag, grpclog's global
// logger), which -race reports in every multi-node run. `make test` runs them in a
// pass of their own without -race (docs/cluster.md).

package actors

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	userservice "github.com/lms-platform/userservice"
)

// The linearizability check: clients on every node read and write the bio of a
// few users while nodes join, leave and die; the history is checked by porcupine
// against one register per user.

// regInput is one operation on one register: a user's bio, one of the user's
// preferences, or the progress of one of the user's enrollments.
type regInput struct {
	user  string
	key   string // "bio", "pref" or "progress"
	write bool
	value string
}

const linCourse = "course-lin"

var linPref = userservice.PrefKey{Category: userservice.CategoryUI, Key: "lin"}

type regOutput struct {
	value string
}

var registerModel = porcupine.Model{
	Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
		by := map[string][]porcupine.Operation{}
		for _, op := range h {
			in := op.Input.(regInput)
			by[in.user+"/"+in.key] = append(by[in.user+"/"+in.key], op)
		}
		out := make([][]porcupine.Operation, 0, len(by))
		for _, ops := range by {
			out = append(out, ops)
		}
		return out
	},
	Init: func() any { return "" },
	Step: func(state, input, output any) (bool, any) {
		in := input.(regInput)
		if in.write {
			return true, in.value
		}
		return output.(regOutput).value == state.(string), state
	},
	DescribeOperation: func(input, output any) string {
		in := input.(regInput)
		if in.write {
			return "write " + in.key + "=" + in.value
		}
		return "read " + in.key + "=" + output.(regOutput).value
	},
}

// history records operations; times are nanoseconds since start.
type history struct {
	start time.Time
	mu    sync.Mutex
	ops   []porcupine.Operation
}

func (h *history) now() int64 { return int64(time.Since(h.start)) }

func (h *history) add(op porcupine.Operation) {
	h.mu.Lock()
	h.ops = append(h.ops, op)
	h.mu.Unlock()
}

// liveSet is the nodes clients may use.
type liveSet struct {
	mu    sync.Mutex
	nodes []userservice.Users
}

func (l *liveSet) pick() userservice.Users {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.nodes[rand.IntN(len(l.nodes))]
}

func (l *liveSet) set(nodes ...userservice.Users) {
	l.mu.Lock()
	l.nodes = nodes
	l.mu.Unlock()
}

// runClients runs clients against live until stop closes and returns the history.
// A write that failed with a provably-not-executed error is left out; one with an
// unknown outcome stays open forever (it may take effect at any later time); a
// failed read is left out.
func runClients(t *testing.T, clients int, users []string, live *liveSet, stop <-chan struct{}) *history {
	h := &history{start: time.Now()}
	var seq atomic.Int64
	var wg sync.WaitGroup
	var unexpected atomic.Int64
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				node := live.pick()
				user := users[rand.IntN(len(users))]
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				call := h.now()
				if rand.IntN(2) == 0 {
					n := seq.Add(1)
					key, cmd, v := writeOp(n)
					_, err := node.Execute(ctx, user, cmd, meta())
					ret := h.now()
					switch {
					case err == nil:
					case errors.Is(err, userservice.ErrPlacementInFlux) || errors.Is(err, ErrShuttingDown):
						cancel()
						continue // not executed
					case userservice.ErrorCode(err) == userservice.ECodeTimeout:
						ret = math.MaxInt64 // outcome unknown
					default:
						unexpected.Add(1)
						t.Errorf("write: %v", err)
						ret = math.MaxInt64
					}
					h.add(porcupine.Operation{ClientId: c, Input: regInput{user: user, key: key, write: true, value: v}, Call: call, Output: regOutput{}, Return: ret})
				} else {
					st, err := node.Get(ctx, user, nil)
					ret := h.now()
					if err == nil {
						// One read of the state is a read of each register.
						for key, v := range readRegisters(st) {
							h.add(porcupine.Operation{ClientId: c, Input: regInput{user: user, key: key}, Call: call, Output: regOutput{value: v}, Return: ret})
						}
					} else if !errors.Is(err, userservice.ErrPlacementInFlux) && !errors.Is(err, ErrShuttingDown) {
						t.Errorf("read: %v", err)
					}
				}
				cancel()
			}
		}()
	}
	wg.Wait()
	return h
}

// writeOp is the n-th write: a bio edit, a preference upsert or a progress update,
// each with a value no other write uses.
func writeOp(n int64) (key string, cmd userservice.Command, value string) {
	v := strconv.FormatInt(n, 10)
	switch n % 3 {
	case 0:
		return "bio", editBio("v" + v), "v" + v
	case 1:
		raw := `"p` + v + `"`
		return "pref", userservice.SetPreferences{Category: linPref.Category, Input: userservice.UpsertPreferences{
			Preferences: []userservice.PreferenceInput{{Key: linPref.Key, Value: json.RawMessage(raw)}}}}, raw
	default:
		p := float64(n%9000) / 100 // below 100: never completes
		return "progress", userservice.SetProgress{CourseID: linCourse, Input: userservice.UpdateProgress{Progress: &p}},
			strconv.FormatFloat(p, 'f', 2, 64)
	}
}

// readRegisters projects a state on the registers.
func readRegisters(st *userservice.State) map[string]string {
	// The model's registers start at "": no write sets a progress of 0 (n%9000 is 0
	// only for multiples of 3, which write the bio), so 0 reads as "".
	out := map[string]string{"bio": "", "pref": "", "progress": ""}
	if st.User.Bio != nil {
		out["bio"] = *st.User.Bio
	}
	if p, ok := st.Preferences.Get(linPref); ok {
		out["pref"] = string(p.Value)
	}
	if e, ok := st.Enrollments.Get(linCourse); ok && e.Progress != 0 {
		out["progress"] = strconv.FormatFloat(e.Progress, 'f', 2, 64)
	}
	return out
}

// seedLinUsers stores n users, each enrolled in linCourse.
func seedLinUsers(t *testing.T, tc *testCluster, n int) []string {
	users := make([]string, n)
	for i := range users {
		users[i] = tc.store.seed(t)
		if _, err := tc.nodes[0].Execute(ctxTimeout(t, 10*time.Second), users[i], userservice.Enroll{CourseID: linCourse}, meta()); err != nil {
			t.Fatalf("enroll: %v", err)
		}
	}
	return users
}

func checkHistory(t *testing.T, h *history) porcupine.CheckResult {
	t.Helper()
	res := porcupine.CheckOperationsTimeout(registerModel, h.ops, 2*time.Minute)
	reads, writes := 0, 0 // reads are counted per register
	for _, op := range h.ops {
		if op.Input.(regInput).write {
			writes++
		} else {
			reads++
		}
	}
	t.Logf("history of %d reads and %d writes: %s", reads, writes, res)
	return res
}

// TestClusterLinearizable: clients on all nodes while a node joins, one leaves
// gracefully and one is killed.
func TestClusterLinearizable(t *testing.T) {
	tc := newTestCluster(t, 3)
	users := seedLinUsers(t, tc, 3)
	live := &liveSet{}
	live.set(tc.nodes[0], tc.nodes[1], tc.nodes[2])
	stop := make(chan struct{})
	done := make(chan *history)
	go func() { done <- runClients(t, 8, users, live, stop) }()
	time.Sleep(time.Second)
	d := tc.add() // join
	live.set(tc.nodes[0], tc.nodes[1], tc.nodes[2], d)
	time.Sleep(2 * time.Second)
	live.set(tc.nodes[0], tc.nodes[2], d) // graceful leave of node 1
	time.Sleep(50 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	if err := tc.nodes[1].Shutdown(ctx); err != nil {
		t.Errorf("graceful leave: %v", err)
	}
	cancel()
	time.Sleep(2 * time.Second)
	live.set(tc.nodes[0], d) // kill node 2
	time.Sleep(50 * time.Millisecond)
	tc.kill(2)
	time.Sleep(5 * time.Second)
	close(stop)
	h := <-done
	if res := checkHistory(t, h); res != porcupine.Ok {
		t.Fatalf("history is not linearizable: %s", res)
	}
}

// staleNode is a deliberately broken node: it answers some reads from a copy it
// read earlier instead of asking the owner.
type staleNode struct {
	userservice.Users
	mu    sync.Mutex
	cache map[string]*userservice.State
}

func (s *staleNode) Get(ctx context.Context, userID string, touch *userservice.Time) (*userservice.State, error) {
	s.mu.Lock()
	st := s.cache[userID]
	s.mu.Unlock()
	if st != nil && rand.IntN(2) == 0 {
		return st, nil
	}
	st, err := s.Users.Get(ctx, userID, touch)
	if err == nil {
		s.mu.Lock()
		s.cache[userID] = st
		s.mu.Unlock()
	}
	return st, err
}

// TestClusterLinearizabilityCheckerCatchesStaleReads: the same check fails when one
// node answers from a copy it does not own.
func TestClusterLinearizabilityCheckerCatchesStaleReads(t *testing.T) {
	tc := newTestCluster(t, 3)
	users := seedLinUsers(t, tc, 2)
	live := &liveSet{}
	live.set(tc.nodes[0], tc.nodes[1], &staleNode{Users: tc.nodes[2], cache: map[string]*userservice.State{}})
	stop := make(chan struct{})
	done := make(chan *history)
	go func() { done <- runClients(t, 8, users, live, stop) }()
	time.Sleep(3 * time.Second)
	close(stop)
	if res := checkHistory(t, <-done); res != porcupine.Illegal {
		t.Fatalf("the checker did not catch the stale node: %s", res)
	}
}
