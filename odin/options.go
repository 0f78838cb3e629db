package odin

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"
)

// Defaults for NewClient.
const (
	DefaultTimeout   = 30 * time.Second
	DefaultUserAgent = "odinreset"
)

// Limiter paces requests to Odin. The client calls Wait before every HTTP request it
// sends, logins and token refreshes included, and returns Wait's error (wrapped with %w)
// without sending anything when Wait fails.
//
// NOTE: net/http's Transport resends a GET by itself when a reused keep-alive connection
// fails before the first response byte arrives. Such a resend passes neither Wait nor the
// observer, so under connection resets Odin can see more GET requests than the limiter
// allowed.
type Limiter interface {
	Wait(ctx context.Context) error
}

// Call describes one finished HTTP exchange with Odin, for metrics. It never contains
// secrets or query strings.
type Call struct {
	Endpoint string        // "METHOD /path" below the base URL, such as "PUT /users/authentication"
	Status   int           // HTTP status, 0 when no response arrived
	Duration time.Duration // from sending the request to reading the whole body
	Err      error         // transport error; nil when a complete response arrived
}

// Option configures a Client in NewClient. Each option validates its argument.
type Option func(*options) error

type options struct {
	httpClient *http.Client
	timeout    time.Duration
	userAgent  string
	limiter    Limiter
	now        func() time.Time
	observer   func(Call)
}

// WithHTTPClient sets the HTTP client; the Client keeps a shallow copy. The default has
// its own transport and does not follow redirects, so that a wrong base URL shows up as a
// 3xx error. A Timeout on hc applies on top of WithTimeout.
func WithHTTPClient(hc *http.Client) Option {
	return func(o *options) error {
		if hc == nil {
			return errors.New("odin: WithHTTPClient: the HTTP client is nil")
		}
		copied := *hc
		o.httpClient = &copied
		return nil
	}
}

// WithTimeout sets the time limit of each HTTP request, from sending it to reading the
// whole response body; it must be > 0 and defaults to 30s. The caller's context still
// cancels a request sooner. A limiter wait does not count towards it.
func WithTimeout(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return errors.New("odin: WithTimeout: the timeout must be greater than 0, got " + d.String())
		}
		o.timeout = d
		return nil
	}
}

// WithUserAgent sets the User-Agent header; the default is "odinreset".
func WithUserAgent(ua string) Option {
	return func(o *options) error {
		ua = strings.TrimSpace(ua)
		if ua == "" || strings.ContainsAny(ua, "\r\n") {
			return errors.New("odin: WithUserAgent: the user agent must be one non-empty line")
		}
		o.userAgent = ua
		return nil
	}
}

// WithLimiter sets the limiter called before every request. Without it the client sends
// requests as fast as its callers ask.
func WithLimiter(l Limiter) Option {
	return func(o *options) error {
		if l == nil {
			return errors.New("odin: WithLimiter: the limiter is nil")
		}
		o.limiter = l
		return nil
	}
}

// WithClock sets the clock used for token expiry and Retry-After dates; the default is
// time.Now. Call durations are measured with the real clock.
func WithClock(now func() time.Time) Option {
	return func(o *options) error {
		if now == nil {
			return errors.New("odin: WithClock: the clock is nil")
		}
		o.now = now
		return nil
	}
}

// WithObserver sets a function called after each HTTP exchange, including failed ones,
// logins and refreshes. It runs on the calling goroutine, possibly from many goroutines
// at once, so it must be fast and safe for concurrent use.
func WithObserver(fn func(Call)) Option {
	return func(o *options) error {
		if fn == nil {
			return errors.New("odin: WithObserver: the observer is nil")
		}
		o.observer = fn
		return nil
	}
}

// defaultHTTPClient returns a client with its own connection pool, sized for a worker
// that runs dozens of requests at once, and without redirects.
func defaultHTTPClient() *http.Client {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConnsPerHost = 64
	return &http.Client{
		Transport: transport,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}
