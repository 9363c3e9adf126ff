package client

import (
	"context"
	"math/rand"
	"time"
)

// Backoff yields exponentially growing delays with jitter: each delay is drawn uniformly from
// [ceiling/2, ceiling], and the ceiling starts at Initial and grows by Multiplier up to Max. The jitter
// keeps many clients that failed together from retrying together.
type Backoff struct {
	Initial    time.Duration
	Max        time.Duration
	Multiplier float64

	ceiling time.Duration
	random  *rand.Rand
}

// Next returns the delay before the next attempt.
func (b *Backoff) Next() time.Duration {
	if b.random == nil {
		b.random = rand.New(rand.NewSource(time.Now().UnixNano()))
	}
	if b.ceiling == 0 {
		b.ceiling = b.Initial
	} else {
		b.ceiling = time.Duration(float64(b.ceiling) * b.Multiplier)
	}
	if b.ceiling > b.Max {
		b.ceiling = b.Max
	}
	half := b.ceiling / 2
	return half + time.Duration(b.random.Int63n(int64(b.ceiling-half)+1))
}

// Reset starts the sequence again from Initial, after a success.
func (b *Backoff) Reset() { b.ceiling = 0 }

// Sleep waits for d, or returns ctx's error if ctx ends first.
func Sleep(ctx context.Context, d time.Duration) error {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
