// Package ratelimit paces the requests that every worker process sends to one
// Odin API, and pauses all of them together, for example after Odin returns
// 429 Too Many Requests.
//
// A Limiter keeps its state in Redis, so any number of processes on any number
// of machines that build a Limiter for the same Odin base URL share one
// budget. Each caller runs Wait before each Odin request.
//
// # Scheduling
//
// Wait reserves the next free slot with the generic cell rate algorithm (GCRA)
// in one Lua script. The script reads the clock of the Redis server (TIME), so
// the clocks of the worker machines do not matter. Each reservation moves the
// theoretical arrival time (TAT) forward by the emission interval 1/Rate, even
// when the slot lies in the future, and the caller sleeps until its slot.
// Callers are therefore spread out one emission interval apart instead of all
// retrying at once. With Burst 1, two reserved slots are at least 1/Rate apart
// on the Redis clock, so a window of length W contains at most W*Rate+1 of
// them. Actual send times add the Redis round trip and timer latency of each
// caller on top.
//
// When the next slot is more than the maximum wait away (see WithMaxWait),
// Wait reserves nothing and returns a *DelayError whose Delay is the time to wait
// before calling again. A caller whose context ends after it reserved a slot
// gives that slot up unused: the fleet then sends slightly fewer requests than
// the limit allows, never more.
//
// A stall of a worker process or of Redis holds up every caller that sleeps
// through it, and they would all send at once when it ends. So after its sleep
// a caller reads the Redis clock, and when its slot lies more than 40 ms (or
// one emission interval, if longer) in the past it gives the slot up and
// reserves a new one.
//
// # Priorities
//
// Callers that reserve slots first come, first served wait behind everyone
// who came before them, up to the maximum wait, so a large batch would delay an
// urgent request by that much. Callers whose context carries LowPriority
// therefore first take a turn in a queue of their own, kept at the same rate,
// and reserve their request slot only when the turn is half the headroom away
// (see WithHeadroom). The request slots past the headroom stay free, and a
// caller without the mark reserves one within about the headroom. Both queues
// honour the pause, and the request slots alone decide the rate.
//
// # Pausing
//
// Pause stops every Limiter that shares the key for a given time, for example
// until the Retry-After of a 429 response or for a cooldown after a failed Odin
// login. The same script that reserves slots reads the pause, so no slot is
// handed out before the pause ends. A caller that reserved a slot before the
// pause began checks the pause again when it wakes up, and queues again behind
// the pause if it is still on.
//
// # Redis keys
//
// All keys of one Limiter share one hash tag derived from the SHA-1 of the
// Odin base URL, for example "odinreset:{rl:1a2b3c4d5e6f}:gcra",
// "odinreset:{rl:1a2b3c4d5e6f}:gcra-low" (the turns of low-priority callers)
// and "odinreset:{rl:1a2b3c4d5e6f}:pause". So the scripts also run on Redis
// Cluster, and no credential from the URL appears in a key name. Every key has
// a TTL a little longer than the state it holds is needed. The package needs
// Redis 6.2 or later, or miniredis v2.40 or later for tests.
package ratelimit
