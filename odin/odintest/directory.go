package odintest

import (
	"net/http"
	"strconv"
)

// userSummary is one element of the group user list.
type userSummary struct {
	UserID            string `json:"userId"`
	ServiceProviderID string `json:"serviceProviderId"`
	GroupID           string `json:"groupId"`
	FirstName         string `json:"firstName"`
	LastName          string `json:"lastName"`
	PhoneNumber       string `json:"phoneNumber"`
	Extension         string `json:"extension"`
}

// userDetails is the single user object of GET /users?userId=.
type userDetails struct {
	userSummary
	CallingLineIDFirstName string                `json:"callingLineIdFirstName"`
	CallingLineIDLastName  string                `json:"callingLineIdLastName"`
	Language               string                `json:"language"`
	TimeZone               string                `json:"timeZone"`
	AccessDeviceEndpoint   *accessDeviceEndpoint `json:"accessDeviceEndpoint,omitempty"`
}

type accessDeviceEndpoint struct {
	AccessDevice accessDevice `json:"accessDevice"`
	LinePort     string       `json:"linePort"`
}

type accessDevice struct {
	DeviceName  string `json:"deviceName"`
	DeviceLevel string `json:"deviceLevel"`
	DeviceType  string `json:"deviceType"`
	MACAddress  string `json:"macAddress"`
	Status      string `json:"status"`
}

func (s *Simulator) summary(u *user) userSummary {
	group := s.groupID
	if u.groupID != "" {
		group = u.groupID
	}
	return userSummary{
		UserID:            u.id,
		ServiceProviderID: s.serviceProviderID,
		GroupID:           group,
		FirstName:         u.firstName,
		LastName:          u.lastName,
		PhoneNumber:       u.phoneNumber,
		Extension:         u.extension,
	}
}

// getUsers handles GET /users. With userId it returns one user's details. Otherwise it
// returns the users of the service provider, or of its group when groupId is given, as
// a bare array capped by the optional limit.
func (s *Simulator) getUsers(r *http.Request) reply {
	query := r.URL.Query()
	if query.Has("userId") {
		u, rep, ok := s.lookupUser(query.Get("userId"))
		if !ok {
			return rep
		}
		return reply{status: http.StatusOK, body: s.details(u)}
	}

	if rep, ok := s.checkGroup(query.Get("serviceProviderId"), query.Get("groupId"), false); !ok {
		return rep
	}
	count := len(s.users)
	if query.Has("limit") {
		limit, err := strconv.Atoi(query.Get("limit"))
		if err != nil || limit < 1 {
			return errorReply(http.StatusBadRequest, "Invalid limit: want a whole number of at least 1")
		}
		count = min(count, limit)
	}

	list := make([]userSummary, count)
	for i, u := range s.users[:count] {
		list[i] = s.summary(u)
	}
	return reply{status: http.StatusOK, body: list}
}

func (s *Simulator) details(u *user) userDetails {
	d := userDetails{
		userSummary:            s.summary(u),
		CallingLineIDFirstName: u.firstName,
		CallingLineIDLastName:  u.lastName,
		Language:               "English",
		TimeZone:               "America/New_York",
	}
	if u.device != nil {
		d.AccessDeviceEndpoint = &accessDeviceEndpoint{
			AccessDevice: accessDevice{
				DeviceName:  u.device.name,
				DeviceLevel: u.device.level,
				DeviceType:  deviceType,
				MACAddress:  u.device.macAddress,
				Status:      "Online",
			},
			LinePort: u.userName + "_lp@example.com",
		}
	}
	return d
}

type deviceRequest struct {
	ServiceProviderID string `json:"serviceProviderId"`
	GroupID           string `json:"groupId"`
	DeviceName        string `json:"deviceName"`
}

// rebuildDevice handles POST /groups/devices/rebuild.
func (s *Simulator) rebuildDevice(r *http.Request) reply {
	return s.deviceOp(r, "rebuild")
}

// resetDevice handles POST /groups/devices/reset.
func (s *Simulator) resetDevice(r *http.Request) reply {
	return s.deviceOp(r, "reset")
}

// deviceOp records a rebuild or reset of a group-level device. Devices at the service
// provider level and devices listed in DeviceLayout.RejectRebuild or RejectReset get
// 400, unknown devices 404.
func (s *Simulator) deviceOp(r *http.Request, op string) reply {
	var req deviceRequest
	if rep, ok := decodeBody(r, &req); !ok {
		return rep
	}
	if rep, ok := s.checkGroup(req.ServiceProviderID, req.GroupID, true); !ok {
		return rep
	}
	if req.DeviceName == "" {
		return missingField("deviceName")
	}
	d := s.groupDevices[req.DeviceName]
	if d == nil {
		if s.spDevices[req.DeviceName] != nil {
			return errorReplyDetails(http.StatusBadRequest,
				"Device "+req.DeviceName+" is not a group-level device: only group-level devices can be rebuilt or reset here",
				map[string]string{"field": "deviceName"})
		}
		return errorReply(http.StatusNotFound, "Access device not found: "+req.DeviceName)
	}

	if op == "rebuild" && d.rejectRebuild || op == "reset" && d.rejectReset {
		return errorReply(http.StatusBadRequest, "Device "+d.name+" cannot be "+pastTense(op)+": the simulator is configured to reject it")
	}

	at := s.now()
	s.mu.Lock()
	if op == "rebuild" {
		d.rebuilt++
	} else {
		d.reset++
	}
	sets := make(map[string]int, len(d.users))
	for _, id := range d.users {
		sets[id] = s.usersByID[id].creds[kindIndex(KindSIP)].setCount
	}
	s.deviceEvents = append(s.deviceEvents, DeviceEvent{Device: d.name, Op: op, At: at, SIPPasswordSets: sets})
	s.mu.Unlock()

	return reply{status: http.StatusOK, body: map[string]string{
		"serviceProviderId": s.serviceProviderID,
		"groupId":           s.groupID,
		"deviceName":        d.name,
	}}
}

func pastTense(op string) string {
	if op == "rebuild" {
		return "rebuilt"
	}
	return op
}
