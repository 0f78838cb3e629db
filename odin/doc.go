// Package odin is a client for the Odin API, Rev.io's REST API in front of Cisco
// BroadWorks. It covers the calls that bulk credential resets need: login and token
// refresh, the web password, passcode and SIP password generators, the three setters,
// the SIP user-name lookup, group user listing, one user's device, and device rebuild and
// reset.
//
// # Contract
//
// A Client is created with the base URL (such as "https://odin.example.com/api/v2") and
// one admin's credentials, and is safe for concurrent use. Every request carries
// `Authorization: Bearer <token>` (except the login), `Content-Type: application/json`,
// `Accept: application/json` and a User-Agent; bodies are JSON and query values are
// URL-encoded, so user IDs may contain "@", "+", spaces and non-ASCII letters.
//
// Before every HTTP request, logins included, the client calls Limiter.Wait (see
// WithLimiter) and gives each request its own timeout (WithTimeout, default 30s) inside
// the caller's context. It does not retry by itself, with one exception: on 401 or 403
// it logs in again (one login for all concurrent callers that held the rejected token)
// and resends the request once. Retrying transient failures with backoff is the caller's
// job; RetryAfter, IsTransient, IsPermanent, IsRuleRejection and IsAuthFailure classify
// the errors for it.
//
// The token is a JWT whose exp claim the client reads, without checking the signature, to
// refresh it with PUT /auth/token when a quarter of its lifetime (or one minute) remains,
// and to log in again once it has expired or the refresh fails. A token that is not a JWT
// is used until Odin rejects it.
//
// Errors are typed: *APIError for a non-2xx response, *RateLimitError for 429, *LoginError
// for rejected credentials (wrapping ErrPasswordChangeRequired for 402), *CountError for
// a generator that returned the wrong number of values. Transport failures name the
// method and path only, never the URL with its query. Error texts never quote a request
// body, and the password or passcode a request carried, the admin password and the token
// are removed from Odin's messages even when Odin echoes them. (A value shorter than 8
// characters is removed only where no letter or digit touches it, so that error codes
// stay readable.) The package never logs.
//
// # What is not known about the real Odin
//
// The behaviour above follows Odin's public Postman collection, its web front-end and
// third-party clients; it has not been checked against a live Odin. Unknown and handled
// defensively:
//
//   - the token lifetime, and whether a refresh works near expiry;
//   - the HTTP status and text of BroadWorks rejections, which is why IsRuleRejection
//     matches keywords of BroadWorks rule settings;
//   - whether GET /sip-password/generate accepts limit, serviceProviderId and groupId
//     (GenerateSIPPasswords tries limit once and falls back to single calls), and whether
//     any generator returns the singular or the plural key for limit=1 (both are read);
//   - the largest accepted limit, and whether generators always return as many values as
//     requested (the count is checked);
//   - whether Odin ever sends 429 and Retry-After (both are handled);
//   - whether error bodies are always JSON (HTML and empty bodies are reported too).
package odin
