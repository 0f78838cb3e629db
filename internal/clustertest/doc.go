// Package clustertest runs Redis deployments as real redis-server processes on loopback
// for tests: a Redis Cluster of three masters with one replica each, and a Sentinel
// group of one master, one replica and three Sentinels. Its own tests run whole reset
// batches on both with cmd/worker processes.
//
// Every server listens on 127.0.0.1 only, on ports probed free in a fixed range, keeps
// its files in the test's temporary directory, and is stopped by the test's cleanup.
// Tests skip when redis-server or redis-cli is not installed.
package clustertest
