// Package leaktest holds the test that no secret leaves the result record. It runs worker
// processes at debug log level against an Odin simulator with faults, a login failure and
// rule rejections. Then it searches every log line, every asynq task payload and last
// error, the /metrics output, the completion callbacks and every value in Redis. It looks
// for each value Odin generated or received, the Odin password and tokens, the Redis
// password, the dashboard password and the results key.
//
// The package has no code of its own: see leak_test.go.
package leaktest
