package odintest

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"
)

// Simulator is an in-memory Odin API for one service provider and one group. It serves
// the API under /api/v2 and inspection endpoints under /_sim/ through ServeHTTP. All
// methods are safe for concurrent use.
type Simulator struct {
	// Fixed after New.
	serviceProviderID string
	groupID           string
	rules             rules
	maxGenerateLimit  int
	sipAcceptsLimit   bool
	now               func() time.Time
	signer            tokenSigner
	users             []*user // the group's users, in group order
	otherUsers        []*user // Config.OtherGroupUsers
	usersByID         map[string]*user
	groupDevices      map[string]*device
	spDevices         map[string]*device

	mu           sync.Mutex // guards user credentials, device counters and deviceEvents
	deviceEvents []DeviceEvent

	controlMu              sync.Mutex // guards the settings below, which tests change at run time
	username, password     string
	passwordChangeRequired bool
	tokenLifetime          time.Duration
	tokenGeneration        uint64
	latency, jitter        time.Duration
	rateLimit              float64
	retryAfterHTTPDate     bool
	faults                 Faults
	faultRand              *rand.Rand // seeded from Faults.Seed, nil when the seed is 0

	admission admission
}

// Credential is the state of one credential of one user.
type Credential struct {
	Value    string   `json:"value"`             // the value last set
	SetCount int      `json:"setCount"`          // accepted PUT requests
	History  []string `json:"history,omitempty"` // every accepted value, oldest first
}

// DeviceEvent is one device rebuild or reset, in the order the simulator handled them.
type DeviceEvent struct {
	Device string    `json:"device"`
	Op     string    `json:"op"` // "rebuild" or "reset"
	At     time.Time `json:"at"`
	// SIPPasswordSets maps each user of the device to the number of times its SIP
	// password had been set when the event happened, so tests can check that a phone
	// was rebuilt after its users' new passwords.
	SIPPasswordSets map[string]int `json:"sipPasswordSets"`
}

// New returns a Simulator for cfg, or an error naming every invalid field.
func New(cfg Config) (*Simulator, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("odintest: invalid config: %w", err)
	}

	users, others, byID, err := buildUsers(cfg)
	if err != nil {
		return nil, fmt.Errorf("odintest: invalid config: %w", err)
	}
	if err := applyUserLists(cfg, byID); err != nil {
		return nil, fmt.Errorf("odintest: invalid config: %w", err)
	}
	groupDevices, spDevices, err := buildDevices(cfg.Devices, users, byID)
	if err != nil {
		return nil, fmt.Errorf("odintest: invalid config: %w", err)
	}

	s := &Simulator{
		serviceProviderID: cfg.ServiceProviderID,
		groupID:           cfg.GroupID,
		rules: rules{
			passwordMinLength: cfg.PasswordMinLength,
			sipPasswordLength: cfg.SIPPasswordLength,
			passcodeMinLength: cfg.PasscodeMinLength,
			passcodeMaxLength: cfg.PasscodeMaxLength,
		},
		maxGenerateLimit:       cfg.MaxGenerateLimit,
		sipAcceptsLimit:        cfg.SIPGeneratorAcceptsLimit,
		now:                    cfg.Now,
		signer:                 newTokenSigner(),
		users:                  users,
		otherUsers:             others,
		usersByID:              byID,
		groupDevices:           groupDevices,
		spDevices:              spDevices,
		username:               cfg.Username,
		password:               cfg.Password,
		passwordChangeRequired: cfg.LoginPasswordChangeRequired,
		tokenLifetime:          cfg.TokenLifetime,
		latency:                cfg.Latency,
		jitter:                 cfg.LatencyJitter,
		rateLimit:              cfg.RateLimit,
		retryAfterHTTPDate:     cfg.RetryAfterHTTPDate,
	}
	s.setFaultsLocked(cfg.Faults)
	s.admission.stats = newStats()
	s.admission.limiter = newRateLimiter(cfg.RateLimit)
	return s, nil
}

// ServiceProviderID returns the simulated service provider's ID.
func (s *Simulator) ServiceProviderID() string { return s.serviceProviderID }

// GroupID returns the simulated group's ID.
func (s *Simulator) GroupID() string { return s.groupID }

// Login returns the admin user name and password that POST /auth/token accepts now.
func (s *Simulator) Login() (username, password string) {
	s.controlMu.Lock()
	defer s.controlMu.Unlock()
	return s.username, s.password
}

// SetFaults replaces the injected faults. A zero HangDuration means 30s. It panics when
// f is invalid, as New would have returned an error for it.
func (s *Simulator) SetFaults(f Faults) {
	f = f.withDefaults()
	if err := f.validate(); err != nil {
		panic("odintest: SetFaults: " + err.Error())
	}
	s.controlMu.Lock()
	defer s.controlMu.Unlock()
	s.setFaultsLocked(f)
}

func (s *Simulator) setFaultsLocked(f Faults) {
	s.faults = f
	s.faultRand = nil
	if f.Seed != 0 {
		s.faultRand = rand.New(rand.NewPCG(uint64(f.Seed), 0x6f64696e))
	}
}

// SetRateLimit replaces the rate limit in requests per second (0 means unlimited) and
// clears the record of requests accepted so far. It panics on a negative rate.
func (s *Simulator) SetRateLimit(rps float64) {
	if err := validateRateLimit(rps); err != nil {
		panic("odintest: SetRateLimit: " + err.Error())
	}
	s.controlMu.Lock()
	s.rateLimit = rps
	s.controlMu.Unlock()

	s.admission.mu.Lock()
	s.admission.limiter = newRateLimiter(rps)
	s.admission.mu.Unlock()
}

// SetRetryAfterHTTPDate chooses whether 429 responses give Retry-After as an HTTP date
// (true) or as seconds (false).
func (s *Simulator) SetRetryAfterHTTPDate(httpDate bool) {
	s.controlMu.Lock()
	defer s.controlMu.Unlock()
	s.retryAfterHTTPDate = httpDate
}

// SetLatency replaces the delay added to every API request. It panics on negative values.
func (s *Simulator) SetLatency(latency, jitter time.Duration) {
	if err := validateLatency(latency, jitter); err != nil {
		panic("odintest: SetLatency: " + err.Error())
	}
	s.controlMu.Lock()
	defer s.controlMu.Unlock()
	s.latency, s.jitter = latency, jitter
}

// SetCredentials changes the admin login that POST /auth/token accepts. Tokens issued
// before stay valid.
func (s *Simulator) SetCredentials(username, password string) {
	s.controlMu.Lock()
	defer s.controlMu.Unlock()
	s.username, s.password = username, password
}

// SetLoginPasswordChangeRequired chooses whether a login with the right credentials
// gets 402.
func (s *Simulator) SetLoginPasswordChangeRequired(required bool) {
	s.controlMu.Lock()
	defer s.controlMu.Unlock()
	s.passwordChangeRequired = required
}

// SetTokenLifetime changes the lifetime of tokens issued from now on. It panics unless
// lifetime is positive.
func (s *Simulator) SetTokenLifetime(lifetime time.Duration) {
	if lifetime <= 0 {
		panic(fmt.Sprintf("odintest: SetTokenLifetime: lifetime is %v, want a positive duration", lifetime))
	}
	s.controlMu.Lock()
	defer s.controlMu.Unlock()
	s.tokenLifetime = lifetime
}

// ExpireTokens invalidates every token issued so far: the next request that carries one
// gets 401, including a refresh.
func (s *Simulator) ExpireTokens() {
	s.controlMu.Lock()
	defer s.controlMu.Unlock()
	s.tokenGeneration++
}

// Credential returns the value last set for userID's credential of kind and how many
// times one was set. The value is "" and the count 0 when none was set yet. ok is false
// when the user is not in the group or kind is unknown.
func (s *Simulator) Credential(userID string, kind Kind) (value string, setCount int, ok bool) {
	u, known := s.usersByID[userID]
	if !known || !kind.valid() {
		return "", 0, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c := u.creds[kindIndex(kind)]
	return c.value, c.setCount, true
}

// Credentials returns a copy of every credential set so far: user ID, then kind. Users
// and kinds without an accepted PUT are left out.
func (s *Simulator) Credentials() map[string]map[Kind]Credential {
	s.mu.Lock()
	defer s.mu.Unlock()

	all := make(map[string]map[Kind]Credential)
	for _, u := range slices.Concat(s.users, s.otherUsers) {
		for i, c := range u.creds {
			if c.setCount == 0 {
				continue
			}
			byKind := all[u.id]
			if byKind == nil {
				byKind = make(map[Kind]Credential, len(kindIndexes))
				all[u.id] = byKind
			}
			byKind[kindIndexes[i]] = Credential{Value: c.value, SetCount: c.setCount, History: slices.Clone(c.history)}
		}
	}
	return all
}

// Users returns the IDs of the group's users in group order.
func (s *Simulator) Users() []string {
	ids := make([]string, len(s.users))
	for i, u := range s.users {
		ids[i] = u.id
	}
	return ids
}

// Stats returns a copy of the request counters.
func (s *Simulator) Stats() Stats {
	s.admission.mu.Lock()
	defer s.admission.mu.Unlock()
	return s.admission.stats.clone()
}

// ResetStats zeroes the request counters, MaxPerSecond included. It keeps credentials,
// device counters and device events, and the rate limit's memory of accepted requests.
func (s *Simulator) ResetStats() {
	s.admission.mu.Lock()
	defer s.admission.mu.Unlock()
	s.admission.stats = newStats()
	s.admission.arrivals = arrivalWindow{}
}

// DeviceOps returns how many times the group-level device deviceName was rebuilt and
// reset. Both are 0 for an unknown device.
func (s *Simulator) DeviceOps(deviceName string) (rebuilt, reset int) {
	d := s.groupDevices[deviceName]
	if d == nil {
		return 0, 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return d.rebuilt, d.reset
}

// DeviceEvents returns a copy of the device rebuilds and resets in the order they
// were handled.
func (s *Simulator) DeviceEvents() []DeviceEvent {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.deviceEvents)
}

// Device describes a user's phone.
type Device struct {
	Name  string   `json:"deviceName"`
	Level string   `json:"deviceLevel"` // "Group" or "Service Provider"
	Type  string   `json:"deviceType"`
	Users []string `json:"users"` // in group order
}

// UserDevice returns the phone of userID. ok is false when the user is unknown or has
// no device.
func (s *Simulator) UserDevice(userID string) (d Device, ok bool) {
	u := s.usersByID[userID]
	if u == nil || u.device == nil {
		return Device{}, false
	}
	return u.device.describe(), true
}

func (d *device) describe() Device {
	return Device{Name: d.name, Level: d.level, Type: deviceType, Users: slices.Clone(d.users)}
}
