package odin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"strings"
)

// User is one entry of a group's user list (GET /users?serviceProviderId=&groupId=).
type User struct {
	UserID            string `json:"userId"`
	ServiceProviderID string `json:"serviceProviderId"`
	GroupID           string `json:"groupId"`
	FirstName         string `json:"firstName"`
	LastName          string `json:"lastName"`
	PhoneNumber       string `json:"phoneNumber"`
	Extension         string `json:"extension"`
}

// UserDetail is the part of one user's details (GET /users?userId=) that this project
// uses.
type UserDetail struct {
	UserID string
	// ServiceProviderID and GroupID are the user's service provider and group, "" when
	// Odin's response has none.
	ServiceProviderID string
	GroupID           string
	// Device is the user's phone from accessDeviceEndpoint.accessDevice; nil when the
	// user has no device endpoint.
	Device *Device
}

// Device is a user's access device. Odin rebuilds and resets only devices whose Level is
// "Group".
type Device struct {
	Name  string // deviceName
	Level string // deviceLevel: "Group", "Service Provider", "System"
	Type  string // deviceType, such as "Polycom VVX 450"
}

// PasscodeInfo is a user's voice portal passcode settings (GET /users/portal-passcode),
// without the passcode, which Odin masks.
type PasscodeInfo struct {
	UserID          string
	IsLoginDisabled bool
	ExpirationDays  int // 0 when Odin sends none
}

// SIPUserName returns the SIP authentication user name of a user
// (GET /users/authentication?userId=), to send with SetSIPPassword. It returns "" with a
// nil error when Odin's response has no userName. Users without the Authentication service
// get a permanent *APIError.
func (c *Client) SIPUserName(ctx context.Context, userID string) (string, error) {
	if userID == "" {
		return "", errors.New("odin: SIPUserName: the user ID is empty")
	}
	var body struct {
		UserName flexString `json:"userName"`
	}
	r := &request{method: http.MethodGet, path: "/users/authentication", query: url.Values{"userId": {userID}}}
	if err := c.call(ctx, r, &body); err != nil {
		return "", err
	}
	return string(body.UserName), nil
}

// SetSIPPassword sets a user's SIP authentication password (PUT /users/authentication
// with {userId, userName, newPassword}). userName is omitted when empty. Phones keep the
// old credentials until their configuration is rebuilt (RebuildDevice).
func (c *Client) SetSIPPassword(ctx context.Context, userID, userName, newPassword string) error {
	if err := checkSetArgs("SetSIPPassword", userID, newPassword); err != nil {
		return err
	}
	body := struct {
		UserID      string `json:"userId"`
		UserName    string `json:"userName,omitempty"`
		NewPassword string `json:"newPassword"`
	}{userID, userName, newPassword}
	r := &request{method: http.MethodPut, path: "/users/authentication", body: body, secrets: []string{newPassword}}
	return c.call(ctx, r, nil)
}

// SetWebPassword sets a user's web portal password (PUT /users/passwords with
// {userId, newPassword}). Without oldPassword, BroadWorks skips the rules about the old
// password, but history rules may still reject the value.
func (c *Client) SetWebPassword(ctx context.Context, userID, newPassword string) error {
	if err := checkSetArgs("SetWebPassword", userID, newPassword); err != nil {
		return err
	}
	body := struct {
		UserID      string `json:"userId"`
		NewPassword string `json:"newPassword"`
	}{userID, newPassword}
	r := &request{method: http.MethodPut, path: "/users/passwords", body: body, secrets: []string{newPassword}}
	return c.call(ctx, r, nil)
}

// SetPortalPasscode sets a user's voice portal (voicemail) passcode
// (PUT /users/portal-passcode with {userId, newPasscode}).
func (c *Client) SetPortalPasscode(ctx context.Context, userID, newPasscode string) error {
	if err := checkSetArgs("SetPortalPasscode", userID, newPasscode); err != nil {
		return err
	}
	body := struct {
		UserID      string `json:"userId"`
		NewPasscode string `json:"newPasscode"`
	}{userID, newPasscode}
	r := &request{method: http.MethodPut, path: "/users/portal-passcode", body: body, secrets: []string{newPasscode}}
	return c.call(ctx, r, nil)
}

func checkSetArgs(name, userID, value string) error {
	if userID == "" {
		return fmt.Errorf("odin: %s: the user ID is empty", name)
	}
	if value == "" {
		return fmt.Errorf("odin: %s: the new value is empty", name)
	}
	return nil
}

// PortalPasscodeInfo returns a user's voice portal passcode settings
// (GET /users/portal-passcode?userId=). Dry runs use it to check that a user has a voice
// portal without changing anything.
func (c *Client) PortalPasscodeInfo(ctx context.Context, userID string) (*PasscodeInfo, error) {
	if userID == "" {
		return nil, errors.New("odin: PortalPasscodeInfo: the user ID is empty")
	}
	var body struct {
		UserID          flexString  `json:"userId"`
		IsLoginDisabled flexBool    `json:"isLoginDisabled"`
		ExpirationDays  json.Number `json:"expirationDays"`
	}
	r := &request{method: http.MethodGet, path: "/users/portal-passcode", query: url.Values{"userId": {userID}}}
	if err := c.call(ctx, r, &body); err != nil {
		return nil, err
	}

	info := &PasscodeInfo{UserID: string(body.UserID), IsLoginDisabled: bool(body.IsLoginDisabled)}
	if info.UserID == "" {
		info.UserID = userID
	}
	if body.ExpirationDays != "" {
		days, err := body.ExpirationDays.Int64()
		if err != nil {
			return nil, &decodeError{method: r.method, path: r.path, reason: `"expirationDays" is not an integer`}
		}
		info.ExpirationDays = int(days)
	}
	return info, nil
}

// GroupUsers returns every user of a group (GET /users?serviceProviderId=&groupId=), in
// Odin's order. Odin returns the whole group in one response; there is no paging.
func (c *Client) GroupUsers(ctx context.Context, serviceProviderID, groupID string) ([]User, error) {
	if serviceProviderID == "" || groupID == "" {
		return nil, errors.New("odin: GroupUsers: the service provider ID and the group ID must not be empty")
	}
	var body []struct {
		UserID            flexString `json:"userId"`
		ServiceProviderID flexString `json:"serviceProviderId"`
		GroupID           flexString `json:"groupId"`
		FirstName         flexString `json:"firstName"`
		LastName          flexString `json:"lastName"`
		PhoneNumber       flexString `json:"phoneNumber"`
		Extension         flexString `json:"extension"`
	}
	query := url.Values{"serviceProviderId": {serviceProviderID}, "groupId": {groupID}}
	r := &request{method: http.MethodGet, path: "/users", query: query}
	if err := c.call(ctx, r, &body); err != nil {
		return nil, err
	}

	users := make([]User, 0, len(body))
	for i, u := range body {
		if u.UserID == "" {
			return nil, &decodeError{method: r.method, path: r.path, reason: fmt.Sprintf("user %d has no userId", i)}
		}
		users = append(users, User{
			UserID:            string(u.UserID),
			ServiceProviderID: string(u.ServiceProviderID),
			GroupID:           string(u.GroupID),
			FirstName:         string(u.FirstName),
			LastName:          string(u.LastName),
			PhoneNumber:       string(u.PhoneNumber),
			Extension:         string(u.Extension),
		})
	}
	return users, nil
}

// GroupUserIDs returns the IDs of a group's users (GET /users?serviceProviderId=&groupId=),
// in Odin's order. It decodes nothing else of the list, so a group of 100,000 users costs
// little more memory than the response itself.
func (c *Client) GroupUserIDs(ctx context.Context, serviceProviderID, groupID string) ([]string, error) {
	if serviceProviderID == "" || groupID == "" {
		return nil, errors.New("odin: GroupUserIDs: the service provider ID and the group ID must not be empty")
	}
	var body []struct {
		UserID flexString `json:"userId"`
	}
	query := url.Values{"serviceProviderId": {serviceProviderID}, "groupId": {groupID}}
	r := &request{method: http.MethodGet, path: "/users", query: query}
	if err := c.call(ctx, r, &body); err != nil {
		return nil, err
	}

	ids := make([]string, len(body))
	for i, u := range body {
		if u.UserID == "" {
			return nil, &decodeError{method: r.method, path: r.path, reason: fmt.Sprintf("user %d has no userId", i)}
		}
		ids[i] = string(u.UserID)
	}
	return ids, nil
}

// UserDetail returns one user's details (GET /users?userId=): the user ID, its service
// provider and group, and the phone, if any. An unknown user gets a permanent *APIError (404).
func (c *Client) UserDetail(ctx context.Context, userID string) (*UserDetail, error) {
	if userID == "" {
		return nil, errors.New("odin: UserDetail: the user ID is empty")
	}
	var body json.RawMessage
	r := &request{method: http.MethodGet, path: "/users", query: url.Values{"userId": {userID}}}
	if err := c.call(ctx, r, &body); err != nil {
		return nil, err
	}

	// The documented response is one object. A list containing exactly one user is
	// accepted too, because the same path lists users for other queries.
	body = bytes.TrimSpace(body)
	if len(body) > 0 && body[0] == '[' {
		var list []json.RawMessage
		if err := json.Unmarshal(body, &list); err != nil {
			return nil, newDecodeError(r.method, r.path, err)
		}
		if len(list) != 1 {
			return nil, &decodeError{method: r.method, path: r.path, reason: fmt.Sprintf("expected one user, got a list of %d", len(list))}
		}
		body = list[0]
	}

	var detail struct {
		UserID               flexString `json:"userId"`
		ServiceProviderID    flexString `json:"serviceProviderId"`
		GroupID              flexString `json:"groupId"`
		AccessDeviceEndpoint *struct {
			AccessDevice *struct {
				DeviceName  flexString `json:"deviceName"`
				DeviceLevel flexString `json:"deviceLevel"`
				DeviceType  flexString `json:"deviceType"`
			} `json:"accessDevice"`
		} `json:"accessDeviceEndpoint"`
	}
	if err := json.Unmarshal(body, &detail); err != nil {
		return nil, newDecodeError(r.method, r.path, err)
	}

	result := &UserDetail{
		UserID:            string(detail.UserID),
		ServiceProviderID: string(detail.ServiceProviderID),
		GroupID:           string(detail.GroupID),
	}
	if result.UserID == "" {
		result.UserID = userID
	}
	if endpoint := detail.AccessDeviceEndpoint; endpoint != nil && endpoint.AccessDevice != nil &&
		endpoint.AccessDevice.DeviceName != "" {
		device := endpoint.AccessDevice
		result.Device = &Device{Name: string(device.DeviceName), Level: string(device.DeviceLevel), Type: string(device.DeviceType)}
	}
	return result, nil
}

// RebuildDevice makes Odin rebuild the configuration files of a group-level device
// (POST /groups/devices/rebuild), so that the phone picks up new SIP credentials.
func (c *Client) RebuildDevice(ctx context.Context, serviceProviderID, groupID, deviceName string) error {
	return c.deviceAction(ctx, "/groups/devices/rebuild", serviceProviderID, groupID, deviceName)
}

// ResetDevice makes a group-level device re-sync (POST /groups/devices/reset), so that the
// phone downloads its rebuilt configuration.
func (c *Client) ResetDevice(ctx context.Context, serviceProviderID, groupID, deviceName string) error {
	return c.deviceAction(ctx, "/groups/devices/reset", serviceProviderID, groupID, deviceName)
}

func (c *Client) deviceAction(ctx context.Context, path, serviceProviderID, groupID, deviceName string) error {
	if serviceProviderID == "" || groupID == "" || deviceName == "" {
		return fmt.Errorf("odin: POST %s: the service provider ID, group ID and device name must not be empty", path)
	}
	body := struct {
		ServiceProviderID string `json:"serviceProviderId"`
		GroupID           string `json:"groupId"`
		DeviceName        string `json:"deviceName"`
	}{serviceProviderID, groupID, deviceName}
	return c.call(ctx, &request{method: http.MethodPost, path: path, body: body}, nil)
}

// flexString decodes a JSON string, number or boolean as its text and null as "". Odin
// fields such as phoneNumber and extension are strings in every example, but digit
// fields sent as numbers must not fail a whole group listing.
type flexString string

func (s *flexString) UnmarshalJSON(data []byte) error {
	data = bytes.TrimSpace(data)
	switch {
	case string(data) == "null":
		*s = ""
	case len(data) > 0 && data[0] == '"':
		var text string
		if err := json.Unmarshal(data, &text); err != nil {
			return err
		}
		*s = flexString(text)
	case len(data) > 0 && (data[0] == '-' || (data[0] >= '0' && data[0] <= '9')),
		string(data) == "true", string(data) == "false":
		*s = flexString(data)
	default:
		return &json.UnmarshalTypeError{Value: "object or array", Type: reflect.TypeFor[string]()}
	}
	return nil
}

// flexBool decodes a JSON boolean, or the strings "true" and "false", and null as false.
type flexBool bool

func (b *flexBool) UnmarshalJSON(data []byte) error {
	switch strings.Trim(strings.TrimSpace(string(data)), `"`) {
	case "true":
		*b = true
	case "false", "null", "":
		*b = false
	default:
		return &json.UnmarshalTypeError{Value: "non-boolean value", Type: reflect.TypeFor[bool]()}
	}
	return nil
}
