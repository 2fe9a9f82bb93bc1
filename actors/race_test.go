//go:build race

package actors

// raceEnabled: the race detector changes allocation sizes, so memory bounds are
// only asserted without it.
const raceEnabled = true
