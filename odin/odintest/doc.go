// Package odintest simulates the Odin API (Rev.io's REST API in front of Cisco
// BroadWorks) for tests, benchmarks and the demo. It serves the calls a bulk credential
// reset needs under /api/v2:
//
//	POST /auth/token               login: {username, password} -> session with a JWT
//	PUT  /auth/token               refresh with a valid bearer token -> new session
//	GET  /password/generate        ?serviceProviderId&groupId[&limit] -> {password} or {passwords}
//	GET  /passcode/generate        ?serviceProviderId&groupId[&limit] -> {passcode} or {passcodes}
//	GET  /sip-password/generate    [?limit] -> {password}, or {passwords} if configured
//	GET  /users/authentication     ?userId -> {userId, userName}
//	PUT  /users/authentication     {userId, userName, newPassword} sets the SIP password
//	PUT  /users/passwords          {userId, newPassword} sets the web password
//	GET  /users/portal-passcode    ?userId -> masked passcode settings
//	PUT  /users/portal-passcode    {userId, newPasscode} sets the voicemail passcode
//	GET  /users                    ?serviceProviderId[&groupId] -> bare array; ?userId -> one user with its device
//	POST /groups/devices/rebuild   {serviceProviderId, groupId, deviceName}
//	POST /groups/devices/reset     {serviceProviderId, groupId, deviceName}
//
// Every call but login and refresh needs "Authorization: Bearer <token>"; requests with
// a body need Content-Type application/json. Errors are JSON {"error", "status",
// "details"} with BroadWorks texts such as "[Error 4008] User not found: <id>", except
// the injected 502 and 504 faults, which send nginx-like HTML pages.
//
// Each request goes through these steps in order: it is counted in Stats, checked
// against the rate limit, delayed by the latency, possibly replaced by a fault,
// authenticated, and handled. Requests outside /api/v2 under /_sim/ inspect and steer
// the simulator without a token and are not counted.
//
// The simulator keeps every value set per user and kind with a count, so a test can
// compare what a client recorded with what Odin holds. Use New for an http.Handler
// (with httptest, for example) and NewServer for a real loopback listener, which the
// connection reset and hang faults need.
package odintest
