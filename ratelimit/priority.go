package ratelimit

import (
	"context"
	"time"
)

// DefaultHeadroom is how far ahead low-priority callers may reserve request
// slots unless WithHeadroom sets another headroom.
const DefaultHeadroom = time.Second

// WithHeadroom sets how far ahead a low-priority caller (see LowPriority) may
// reserve its request slot. The slots beyond stay free for other callers, so
// each of their requests waits about the headroom at most, however many
// low-priority callers wait. A shorter headroom costs low-priority callers more
// Redis round trips. It must be greater than 0, and the default is
// DefaultHeadroom.
func WithHeadroom(d time.Duration) Option {
	return func(l *Limiter) { l.headroom = d }
}

// lowPriorityKey is the context key of the low-priority mark.
type lowPriorityKey struct{}

// LowPriority returns a copy of parent that marks the Wait calls made with it
// as low priority.
//
// Without the mark, callers reserve request slots first come, first served,
// so a caller arriving behind many others waits for all of them, up to the
// maximum wait. A low-priority caller first takes a turn in a queue of its
// own, kept at the same rate, and reserves its request slot only when the
// turn is half the headroom away. The request slots past the headroom stay
// free, so a caller without the mark reserves one within about the headroom,
// however many low-priority callers wait.
func LowPriority(parent context.Context) context.Context {
	return context.WithValue(parent, lowPriorityKey{}, true)
}

func isLowPriority(ctx context.Context) bool {
	low, _ := ctx.Value(lowPriorityKey{}).(bool)
	return low
}

// awaitTurn takes the next turn of the low-priority callers and sleeps until
// it is half the headroom away. When the turn is that close already, the same
// Redis round trip reserves the request slot too, with slotHorizon as the
// longest wait for it, and awaitTurn returns that reservation. Otherwise it
// returns nil, and Wait reserves the slot after the sleep. It returns the
// errors of Wait when the turn is further away than the maximum wait or the
// deadline of ctx.
func (l *Limiter) awaitTurn(ctx context.Context, slotHorizon time.Duration) (*reservation, error) {
	budget := l.maxWait
	if deadline, ok := ctx.Deadline(); ok {
		budget = min(budget, time.Until(deadline))
	}

	turn, slot, err := l.reserveLow(ctx, budget, slotHorizon)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, ctxErr
		}
		return nil, err
	}
	if !turn.reserved {
		return nil, l.notReservedError(ctx, turn, l.maxWait)
	}
	if slot != nil {
		return slot, nil
	}
	if early := turn.wait - l.headroom/2; early > 0 {
		return nil, l.sleep(ctx, early)
	}
	return nil, nil
}
