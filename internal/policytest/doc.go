// Package policytest proves the fleet policies of the reset worker end to end, on real
// Redis: the fleet-wide rate limit and the pause after a 429, the failure policy (failed
// Odin logins, Odin outages, cancellation), queue priorities, the stalled-job
// sweeper, and the Redis checks the worker runs at start.
//
// The package holds only tests. Claims about processes run the cmd/worker, cmd/odin-sim
// and cmd/enqueue binaries, built once per test run. Their redis-server processes listen
// on loopback ports that the kernel picks. The other claims run in-process workers on
// the Redis of ODINRESET_TEST_REDIS_URL, or on a redis-server that TestMain starts when
// that is not set. Tests skip with a message when neither is available.
//
// The default sizes keep the package under about two minutes on two cores. Set
// ODINRESET_FULL=1 for the full sizes that the measured claims name, for example:
//
//	ODINRESET_FULL=1 go test -v -run TestFleet -timeout 30m ./internal/policytest/
package policytest
