package messaging

import (
	"context"
	"sync"

	"github.com/lms-platform/userservice"
)

// memUsers applies commands with userservice.Apply to in-memory states, the way
// actors and the writer do: authId and email unique, and a mutation that carries
// an already recorded message id fails with ErrDuplicateMessage and changes
// nothing. It is also the Directory and the ProcessedChecker. Safe for
// concurrent use.
type memUsers struct {
	mu        sync.Mutex
	states    map[string]*userservice.State
	byAuth    map[string]string
	byEmail   map[string]string
	processed map[string]bool
	mutations []*userservice.Mutation
	calls     map[string]int // Execute calls by authId

	// fail, when set, is asked before each Execute; a non-nil error is returned
	// instead of applying the command.
	fail func(authID string, cmd userservice.Command) error
	// skipProcessedCheck makes IsProcessed answer false, so that duplicates reach
	// the writer's check.
	skipProcessedCheck bool
}

var (
	_ userservice.Users     = (*memUsers)(nil)
	_ userservice.Directory = (*memUsers)(nil)
	_ ProcessedChecker      = (*memUsers)(nil)
)

func newMemUsers() *memUsers {
	return &memUsers{
		states: map[string]*userservice.State{}, byAuth: map[string]string{}, byEmail: map[string]string{},
		processed: map[string]bool{}, calls: map[string]int{},
	}
}

func (m *memUsers) Get(_ context.Context, userID string, _ *userservice.Time) (*userservice.State, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.states[userID]
	if !ok {
		return nil, userservice.ErrUserNotFound
	}
	return s, nil
}

func (m *memUsers) Execute(_ context.Context, userID string, cmd userservice.Command, meta userservice.Meta) (*userservice.Outcome, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.states[userID]
	authID := ""
	if s != nil {
		authID = s.User.AuthID
	}
	if reg, ok := cmd.(userservice.Register); ok {
		authID = reg.Input.AuthID
	}
	m.calls[authID]++
	if m.fail != nil {
		if err := m.fail(authID, cmd); err != nil {
			return nil, err
		}
	}
	if reg, ok := cmd.(userservice.Register); ok {
		if _, dup := m.byAuth[reg.Input.AuthID]; dup {
			return nil, userservice.Errorf(userservice.ECodeConflict, "User already exists with this auth ID")
		}
		if _, dup := m.byEmail[reg.Input.Email]; dup {
			return nil, userservice.Errorf(userservice.ECodeConflict, "Email address is already registered")
		}
	}
	o, err := userservice.Apply(s, cmd, meta)
	if err != nil {
		return nil, err
	}
	if mu := o.Mutation; mu != nil {
		if id := mu.ProcessedMessageID; id != "" {
			if m.processed[id] {
				return nil, userservice.ErrDuplicateMessage
			}
			m.processed[id] = true
		}
		m.states[userID] = o.State
		m.byAuth[o.State.User.AuthID] = userID
		m.byEmail[o.State.User.Email] = userID
		m.mutations = append(m.mutations, mu)
	}
	return o, nil
}

func (m *memUsers) UserIDByAuthID(_ context.Context, authID string) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	id, ok := m.byAuth[authID]
	if !ok {
		return "", userservice.ErrUserNotFound
	}
	return id, nil
}

func (m *memUsers) SearchUsers(context.Context, userservice.UserSearch) ([]userservice.User, userservice.Pagination, error) {
	return nil, userservice.Pagination{}, userservice.ErrUnavailable
}

func (m *memUsers) AuditLog(context.Context, string, userservice.PageQuery) ([]userservice.AuditRecord, int, error) {
	return nil, 0, userservice.ErrUnavailable
}

func (m *memUsers) PlatformStats(context.Context) (userservice.PlatformStats, error) {
	return userservice.PlatformStats{}, userservice.ErrUnavailable
}

func (m *memUsers) Sessions(context.Context, string, userservice.PageQuery) ([]userservice.Session, int, error) {
	return nil, 0, userservice.ErrUnavailable
}

func (m *memUsers) CourseRoster(context.Context, userservice.RosterQuery) ([]userservice.CourseEnrollment, int64, error) {
	return nil, 0, userservice.ErrUnavailable
}

func (m *memUsers) CourseStats(context.Context, string) (userservice.CourseStats, error) {
	return userservice.CourseStats{}, userservice.ErrUnavailable
}

func (m *memUsers) IsProcessed(_ context.Context, id string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.processed[id] && !m.skipProcessedCheck, nil
}

// byAuthID returns the state of the user with authID, or nil.
func (m *memUsers) byAuthID(authID string) *userservice.State {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.states[m.byAuth[authID]]
}

func (m *memUsers) count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.states)
}

func (m *memUsers) callsFor(authID string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.calls[authID]
}

// audits returns the actions of the audit records committed for userID.
func (m *memUsers) audits(userID string) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for _, mu := range m.mutations {
		if mu.UserID != userID {
			continue
		}
		for _, a := range mu.Audit {
			out = append(out, a.Action)
		}
	}
	return out
}
