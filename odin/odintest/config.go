package odintest

import (
	"errors"
	"fmt"
	"time"
)

// Kind names a credential the simulator stores per user.
type Kind string

// The three credential kinds of a BroadWorks user that Odin can reset.
const (
	KindSIP       Kind = "sip"       // SIP authentication password, set through PUT /users/authentication
	KindVoicemail Kind = "voicemail" // voice portal passcode, set through PUT /users/portal-passcode
	KindWeb       Kind = "web"       // web portal password, set through PUT /users/passwords
)

// Kinds lists every Kind in a fixed order.
var Kinds = []Kind{KindSIP, KindVoicemail, KindWeb}

func (k Kind) valid() bool {
	return k == KindSIP || k == KindVoicemail || k == KindWeb
}

// Config describes the simulated Odin: one service provider with one group, its users,
// the admin login, the group's credential rules and the faults to inject. The zero value
// is valid: New fills every zero field with the default named in its comment.
type Config struct {
	// ServiceProviderID is the only service provider. Default "sp1".
	ServiceProviderID string
	// GroupID is the only group. Default "grp1".
	GroupID string
	// Users is the number of seeded users, named user0001@example.com, user0002@example.com
	// and so on (the number grows past four digits: user10000@example.com). Default 0.
	Users int
	// ExtraUsers are further user IDs in the group, after the seeded ones. Any string
	// without control characters is accepted, so tests can use IDs that need escaping.
	// The SIP password must not contain the local part, so a local part of one or two
	// characters makes many generated SIP passwords invalid.
	ExtraUsers []string
	// OtherGroupUsers are user IDs of another group of the same service provider,
	// OtherGroupID. The group's list leaves them out and GET /users?userId= names their
	// own group, but the setters and GET /users/authentication accept them like any
	// user, as Odin's do: those calls take only the user ID. They have no phone.
	OtherGroupUsers []string
	// OtherGroupID is the group of OtherGroupUsers. Default "grp2".
	OtherGroupID string

	// Username and Password are the admin login accepted by POST /auth/token.
	// Default "admin" and "odin-sim-password".
	Username, Password string
	// TokenLifetime is how long an issued token stays valid. Default 1h.
	TokenLifetime time.Duration
	// LoginPasswordChangeRequired makes a login with the right credentials return 402.
	LoginPasswordChangeRequired bool

	// WithoutAuthentication lists users without the Authentication service: GET and PUT
	// /users/authentication return 400 with BroadWorks error 4410.
	WithoutAuthentication []string
	// WithoutVoiceMessaging lists users without the Voice Messaging User service: GET and
	// PUT /users/portal-passcode return 400 with BroadWorks error 4410.
	WithoutVoiceMessaging []string
	// RejectFirst lists users whose first valid value of each credential kind is rejected
	// with a 400 password-history error. Any later value is accepted unless it equals a
	// rejected one.
	RejectFirst []string

	// PasswordMinLength is the group's minimum web password length. Generated web
	// passwords have max(18, PasswordMinLength) characters. Default 12, range 6 to 60.
	PasswordMinLength int
	// SIPPasswordLength is the length of generated SIP passwords. PUT accepts 6 to 60
	// characters whatever this value is. Default 12, range 6 to 60.
	SIPPasswordLength int
	// PasscodeMinLength and PasscodeMaxLength bound generated and accepted passcodes.
	// Defaults 6 and 8, range 2 to 30.
	PasscodeMinLength, PasscodeMaxLength int
	// SIPGeneratorAcceptsLimit makes GET /sip-password/generate honour limit and return
	// {"passwords": [...]}. When false, it ignores limit and returns {"password": "..."}.
	SIPGeneratorAcceptsLimit bool
	// MaxGenerateLimit is the largest limit the generators accept; a larger one gets 400.
	// Default 1000.
	MaxGenerateLimit int

	// Latency delays every API request, plus a uniform random extra in [0, LatencyJitter).
	Latency, LatencyJitter time.Duration
	// RateLimit is the number of API requests per second that the simulator accepts,
	// counted over all API requests including login. Excess requests get 429 with
	// Retry-After. 0 means unlimited.
	RateLimit float64
	// RetryAfterHTTPDate sends Retry-After as an HTTP date instead of seconds.
	RetryAfterHTTPDate bool

	// Faults are the errors injected into API requests.
	Faults Faults
	// Devices assigns the users' phones.
	Devices DeviceLayout

	// Now is the clock for token expiry, the rate limit, Retry-After dates, device events
	// and MaxPerSecond. Latency and hangs always wait in real time. Default time.Now.
	Now func() time.Time
}

// Faults are the fractions of API requests that fail on purpose. The kinds are exclusive:
// one random draw per request picks at most one of them, so their sum must not pass 1.
type Faults struct {
	// Error500 returns 500 with a JSON error body.
	Error500 float64
	// Error502HTML returns 502 with an HTML page like the one nginx sends.
	Error502HTML float64
	// Reset closes the connection without a response, with SO_LINGER 0 so the client
	// sees a TCP reset. Go's http.Transport resends a GET once when a reused connection
	// is reset, so one client call can count as two requests.
	Reset float64
	// Hang holds the request for HangDuration, or until its context ends, then returns
	// 504 with an HTML gateway timeout page.
	Hang float64
	// HangDuration is how long a hanging request waits. Default 30s.
	HangDuration time.Duration
	// IncludeAuth also injects faults into login and refresh (POST and PUT /auth/token).
	IncludeAuth bool
	// ApplyBeforeFault is the fraction (0 to 1) of faulted requests that are handled
	// before the fault replaces the response, so a PUT takes effect although the client
	// sees an error. The default 0 fails every faulted request before it is handled.
	ApplyBeforeFault float64
	// Seed makes the choice of faulted requests repeatable when non-zero: the same
	// sequence of requests fails the same way.
	Seed int64
}

// DeviceLayout assigns each user's phone. A user not listed has a group-level
// "Polycom VVX 450" named "<local part>-phone", so users whose IDs share a local part
// share that device.
type DeviceLayout struct {
	// NoDevice lists users without an access device endpoint.
	NoDevice []string
	// ServiceProviderLevel lists users whose own device has device level
	// "Service Provider", which the device rebuild and reset calls reject.
	ServiceProviderLevel []string
	// Shared maps a group-level device name to the users whose phone it is.
	Shared map[string][]string
	// RejectRebuild and RejectReset list group-level device names whose rebuild or
	// reset gets 400, as a device whose type Odin cannot provision would.
	RejectRebuild, RejectReset []string
}

const (
	defaultServiceProviderID = "sp1"
	defaultGroupID           = "grp1"
	defaultOtherGroupID      = "grp2"
	defaultUsername          = "admin"
	defaultPassword          = "odin-sim-password"
	defaultTokenLifetime     = time.Hour
	defaultPasswordMinLength = 12
	defaultSIPPasswordLength = 12
	defaultPasscodeMin       = 6
	defaultPasscodeMax       = 8
	defaultMaxGenerateLimit  = 1000
	defaultHangDuration      = 30 * time.Second

	generatedWebPasswordLength = 18
	minPasswordLength          = 6
	maxPasswordLength          = 60
	minPasscodeLength          = 2
	maxPasscodeLength          = 30
	maxRateLimit               = 1_000_000
	maxUsers                   = 10_000_000
)

// withDefaults returns a copy of c with every zero field set to its default.
func (c Config) withDefaults() Config {
	if c.ServiceProviderID == "" {
		c.ServiceProviderID = defaultServiceProviderID
	}
	if c.GroupID == "" {
		c.GroupID = defaultGroupID
	}
	if c.OtherGroupID == "" {
		c.OtherGroupID = defaultOtherGroupID
	}
	if c.Username == "" {
		c.Username = defaultUsername
	}
	if c.Password == "" {
		c.Password = defaultPassword
	}
	if c.TokenLifetime == 0 {
		c.TokenLifetime = defaultTokenLifetime
	}
	if c.PasswordMinLength == 0 {
		c.PasswordMinLength = defaultPasswordMinLength
	}
	if c.SIPPasswordLength == 0 {
		c.SIPPasswordLength = defaultSIPPasswordLength
	}
	if c.PasscodeMinLength == 0 {
		c.PasscodeMinLength = defaultPasscodeMin
	}
	if c.PasscodeMaxLength == 0 {
		c.PasscodeMaxLength = max(defaultPasscodeMax, c.PasscodeMinLength)
	}
	if c.MaxGenerateLimit == 0 {
		c.MaxGenerateLimit = defaultMaxGenerateLimit
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	c.Faults = c.Faults.withDefaults()
	return c
}

func (f Faults) withDefaults() Faults {
	if f.HangDuration == 0 {
		f.HangDuration = defaultHangDuration
	}
	return f
}

// validate checks a Config that already has its defaults. It does not check user lists
// against the users; New does that once it has built them.
func (c Config) validate() error {
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}

	check(c.Users >= 0 && c.Users <= maxUsers, "Users is %d, want 0 to %d", c.Users, maxUsers)
	check(c.OtherGroupID != c.GroupID, "OtherGroupID is %q, the same as GroupID: want another group", c.OtherGroupID)
	check(c.TokenLifetime > 0, "TokenLifetime is %v, want a positive duration", c.TokenLifetime)
	check(c.PasswordMinLength >= minPasswordLength && c.PasswordMinLength <= maxPasswordLength,
		"PasswordMinLength is %d, want %d to %d", c.PasswordMinLength, minPasswordLength, maxPasswordLength)
	check(c.SIPPasswordLength >= minPasswordLength && c.SIPPasswordLength <= maxPasswordLength,
		"SIPPasswordLength is %d, want %d to %d", c.SIPPasswordLength, minPasswordLength, maxPasswordLength)
	check(c.PasscodeMinLength >= minPasscodeLength && c.PasscodeMinLength <= maxPasscodeLength,
		"PasscodeMinLength is %d, want %d to %d", c.PasscodeMinLength, minPasscodeLength, maxPasscodeLength)
	check(c.PasscodeMaxLength >= c.PasscodeMinLength && c.PasscodeMaxLength <= maxPasscodeLength,
		"PasscodeMaxLength is %d, want PasscodeMinLength (%d) to %d", c.PasscodeMaxLength, c.PasscodeMinLength, maxPasscodeLength)
	check(c.MaxGenerateLimit >= 1, "MaxGenerateLimit is %d, want at least 1", c.MaxGenerateLimit)
	if err := validateLatency(c.Latency, c.LatencyJitter); err != nil {
		errs = append(errs, err)
	}
	if err := validateRateLimit(c.RateLimit); err != nil {
		errs = append(errs, err)
	}
	if err := c.Faults.validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func validateLatency(latency, jitter time.Duration) error {
	if latency < 0 || jitter < 0 {
		return fmt.Errorf("latency %v and jitter %v must not be negative", latency, jitter)
	}
	return nil
}

func validateRateLimit(rps float64) error {
	if !(rps >= 0 && rps <= maxRateLimit) { // also rejects NaN
		return fmt.Errorf("RateLimit is %v, want 0 (unlimited) to %d requests per second", rps, maxRateLimit)
	}
	return nil
}

func (f Faults) validate() error {
	fractions := []struct {
		name  string
		value float64
	}{
		{"Error500", f.Error500},
		{"Error502HTML", f.Error502HTML},
		{"Reset", f.Reset},
		{"Hang", f.Hang},
		{"ApplyBeforeFault", f.ApplyBeforeFault},
	}
	for _, fraction := range fractions {
		if !(fraction.value >= 0 && fraction.value <= 1) {
			return fmt.Errorf("Faults.%s is %v, want a fraction from 0 to 1", fraction.name, fraction.value)
		}
	}
	if sum := f.Error500 + f.Error502HTML + f.Reset + f.Hang; sum > 1+1e-9 {
		return fmt.Errorf("Faults add up to %v, want at most 1", sum)
	}
	if f.HangDuration < 0 {
		return fmt.Errorf("Faults.HangDuration is %v, want a positive duration", f.HangDuration)
	}
	return nil
}
