package odintest

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"unicode"
)

// maxUserIDLength is BroadWorks' limit on a user ID.
const maxUserIDLength = 161

const deviceType = "Polycom VVX 450"

const (
	levelGroup           = "Group"
	levelServiceProvider = "Service Provider"
)

// user is one subscriber. Every field but creds is fixed after New, so handlers read
// them without a lock. creds is guarded by Simulator.mu.
type user struct {
	id          string
	groupID     string // "" for a user of the simulated group, else OtherGroupID
	userName    string // SIP authentication user name: the local part of id
	firstName   string
	lastName    string
	phoneNumber string
	extension   string

	hasAuthentication  bool
	hasVoiceMessaging  bool
	rejectsFirstValues bool
	device             *device // nil when the user has no access device endpoint

	creds [len(kindIndexes)]credentialState
}

// credentialState is one credential of one user.
type credentialState struct {
	value    string
	setCount int
	history  []string // every accepted value, oldest first
	rejected []string // values rejected by the RejectFirst rule
}

// device is an access device. Its name, level and users are fixed after New; the
// counters are guarded by Simulator.mu.
type device struct {
	name       string
	level      string
	macAddress string
	users      []string

	// rejectRebuild and rejectReset make the rebuild or reset calls fail with 400.
	rejectRebuild, rejectReset bool

	rebuilt int
	reset   int
}

var kindIndexes = [...]Kind{KindSIP, KindVoicemail, KindWeb}

func kindIndex(k Kind) int {
	for i, known := range kindIndexes {
		if k == known {
			return i
		}
	}
	panic("odintest: unknown credential kind " + strconv.Quote(string(k)))
}

// localPart returns the part of a user ID before its last "@", or the whole ID when it
// has none.
func localPart(userID string) string {
	if at := strings.LastIndex(userID, "@"); at > 0 {
		return userID[:at]
	}
	return userID
}

// SeededUserID returns the ID of the nth seeded user, counting from 1:
// user0001@example.com, ..., user9999@example.com, user10000@example.com.
func SeededUserID(n int) string {
	return fmt.Sprintf("user%04d@example.com", n)
}

func validateUserID(field, id string) error {
	if id == "" {
		return fmt.Errorf("%s contains an empty user ID", field)
	}
	if len(id) > maxUserIDLength {
		return fmt.Errorf("%s: user ID %q has %d bytes, want at most %d", field, id, len(id), maxUserIDLength)
	}
	for _, r := range id {
		if unicode.IsControl(r) || r == unicode.ReplacementChar {
			return fmt.Errorf("%s: user ID %q contains a control character or invalid UTF-8", field, id)
		}
	}
	return nil
}

// buildUsers creates the seeded and extra users in group order, and the users of the
// other group.
func buildUsers(cfg Config) (order, others []*user, byID map[string]*user, err error) {
	total := cfg.Users + len(cfg.ExtraUsers)
	order = make([]*user, 0, total)
	byID = make(map[string]*user, total+len(cfg.OtherGroupUsers))

	add := func(id, firstName, lastName string) error {
		if _, dup := byID[id]; dup {
			return fmt.Errorf("user ID %q appears twice", id)
		}
		n := len(order) + len(others) + 1
		u := &user{
			id:                id,
			userName:          localPart(id),
			firstName:         firstName,
			lastName:          lastName,
			phoneNumber:       strconv.Itoa(5135000000 + n),
			extension:         fmt.Sprintf("%04d", n%10000),
			hasAuthentication: true,
			hasVoiceMessaging: true,
		}
		order = append(order, u)
		byID[id] = u
		return nil
	}

	for n := 1; n <= cfg.Users; n++ {
		if err := add(SeededUserID(n), "User", fmt.Sprintf("%04d", n)); err != nil {
			return nil, nil, nil, err
		}
	}
	for i, id := range cfg.ExtraUsers {
		if err := validateUserID("ExtraUsers", id); err != nil {
			return nil, nil, nil, err
		}
		if err := add(id, "Extra", strconv.Itoa(i+1)); err != nil {
			return nil, nil, nil, fmt.Errorf("ExtraUsers: %w", err)
		}
	}
	for i, id := range cfg.OtherGroupUsers {
		if err := validateUserID("OtherGroupUsers", id); err != nil {
			return nil, nil, nil, err
		}
		if err := add(id, "Other", strconv.Itoa(i+1)); err != nil {
			return nil, nil, nil, fmt.Errorf("OtherGroupUsers: %w", err)
		}
		// add appended the user to the group: move it to the other group.
		u := order[len(order)-1]
		order = order[:len(order)-1]
		u.groupID = cfg.OtherGroupID
		others = append(others, u)
	}
	return order, others, byID, nil
}

// applyUserLists sets the per-user service and rule flags from cfg.
func applyUserLists(cfg Config, byID map[string]*user) error {
	lists := []struct {
		field string
		ids   []string
		apply func(*user)
	}{
		{"WithoutAuthentication", cfg.WithoutAuthentication, func(u *user) { u.hasAuthentication = false }},
		{"WithoutVoiceMessaging", cfg.WithoutVoiceMessaging, func(u *user) { u.hasVoiceMessaging = false }},
		{"RejectFirst", cfg.RejectFirst, func(u *user) { u.rejectsFirstValues = true }},
	}
	for _, list := range lists {
		for _, id := range list.ids {
			u, ok := byID[id]
			if !ok {
				return fmt.Errorf("%s: user %q is not in the group", list.field, id)
			}
			list.apply(u)
		}
	}
	return nil
}

// buildDevices gives every user the phone the layout assigns and returns the
// group-level and service-provider-level devices by name.
func buildDevices(layout DeviceLayout, order []*user, byID map[string]*user) (group, serviceProvider map[string]*device, err error) {
	group = make(map[string]*device)
	serviceProvider = make(map[string]*device)
	assigned := make(map[string]string) // user ID -> where the layout put it

	place := func(id, where string) (*user, error) {
		u, ok := byID[id]
		if !ok {
			return nil, fmt.Errorf("Devices.%s: user %q is not in the group", where, id)
		}
		if previous, dup := assigned[id]; dup {
			return nil, fmt.Errorf("Devices: user %q is listed in both %s and %s", id, previous, where)
		}
		assigned[id] = where
		return u, nil
	}
	macs := 0
	newDevice := func(name, level string) *device {
		macs++
		return &device{name: name, level: level, macAddress: fmt.Sprintf("0004F2%06X", macs)}
	}

	for _, id := range layout.NoDevice {
		if _, err := place(id, "NoDevice"); err != nil {
			return nil, nil, err
		}
	}
	for _, id := range layout.ServiceProviderLevel {
		u, err := place(id, "ServiceProviderLevel")
		if err != nil {
			return nil, nil, err
		}
		name := u.userName + "-phone"
		d := serviceProvider[name]
		if d == nil {
			d = newDevice(name, levelServiceProvider)
			serviceProvider[name] = d
		}
		d.users = append(d.users, u.id)
		u.device = d
	}
	for _, name := range slices.Sorted(maps.Keys(layout.Shared)) {
		ids := layout.Shared[name]
		if name == "" {
			return nil, nil, errors.New("Devices.Shared contains an empty device name")
		}
		d := newDevice(name, levelGroup)
		group[name] = d
		for _, id := range ids {
			u, err := place(id, "Shared["+strconv.Quote(name)+"]")
			if err != nil {
				return nil, nil, err
			}
			u.device = d
		}
	}

	for _, u := range order {
		if _, listed := assigned[u.id]; listed && u.device == nil {
			continue // NoDevice
		}
		if u.device == nil {
			name := u.userName + "-phone"
			d := group[name]
			if d == nil {
				d = newDevice(name, levelGroup)
				group[name] = d
			}
			u.device = d
		}
		if u.device.level == levelGroup {
			u.device.users = append(u.device.users, u.id)
		}
	}

	rejections := []struct {
		field string
		names []string
		apply func(*device)
	}{
		{"RejectRebuild", layout.RejectRebuild, func(d *device) { d.rejectRebuild = true }},
		{"RejectReset", layout.RejectReset, func(d *device) { d.rejectReset = true }},
	}
	for _, rejection := range rejections {
		for _, name := range rejection.names {
			d := group[name]
			if d == nil {
				return nil, nil, fmt.Errorf("Devices.%s: %q is not a group-level device", rejection.field, name)
			}
			rejection.apply(d)
		}
	}
	return group, serviceProvider, nil
}
