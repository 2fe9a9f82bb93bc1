package redis

import (
	"context"
	"errors"

	"github.com/lms-platform/userservice"
)

// Scrubber removes what Redis holds about an erased user (issue 14): the
// user's snapshot, and every admin search answer, since any of them may list
// the user as they were. Search answers are recomputed on the next search.
// It is safe for concurrent use.
type Scrubber struct{ c *Client }

var _ userservice.CacheScrubber = (*Scrubber)(nil)

// NewScrubber returns a Scrubber of c.
func NewScrubber(c *Client) (*Scrubber, error) {
	if c == nil {
		return nil, errors.New("cannot create scrubber: nil client")
	}
	return &Scrubber{c: c}, nil
}

// ScrubUser deletes the user's snapshot and every cached search answer.
func (s *Scrubber) ScrubUser(ctx context.Context, userID string) error {
	err := s.c.call(ctx, func(ctx context.Context) error {
		rdb := s.c.rdb
		if err := rdb.Do(ctx, rdb.B().Del().Key(s.c.key("snap:", userID)).Build()).Error(); err != nil {
			return err
		}
		match := s.c.key("search:", "*")
		var cursor uint64
		for {
			e, err := rdb.Do(ctx, rdb.B().Scan().Cursor(cursor).Match(match).Count(500).Build()).AsScanEntry()
			if err != nil {
				return err
			}
			if len(e.Elements) > 0 {
				if err := rdb.Do(ctx, rdb.B().Unlink().Key(e.Elements...).Build()).Error(); err != nil {
					return err
				}
			}
			if e.Cursor == 0 {
				return nil
			}
			cursor = e.Cursor
		}
	})
	if err != nil {
		return unavailable("scrub an erased user", err)
	}
	return nil
}
