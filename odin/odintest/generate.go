package odintest

import (
	"fmt"
	"net/http"
	"strconv"
)

// generateWebPasswords handles GET /password/generate.
func (s *Simulator) generateWebPasswords(r *http.Request) reply {
	return s.generate(r, KindWeb, "password", "passwords", true, s.rules.generateWebPassword)
}

// generatePasscodes handles GET /passcode/generate.
func (s *Simulator) generatePasscodes(r *http.Request) reply {
	return s.generate(r, KindVoicemail, "passcode", "passcodes", true, s.rules.generatePasscode)
}

// generateSIPPasswords handles GET /sip-password/generate. Its service provider and
// group are optional, and it ignores limit unless Config.SIPGeneratorAcceptsLimit is set.
func (s *Simulator) generateSIPPasswords(r *http.Request) reply {
	return s.generate(r, KindSIP, "password", "passwords", false, s.rules.generateSIPPassword)
}

// generate returns {singular: value} without limit and {plural: [values]} with it.
func (s *Simulator) generate(r *http.Request, kind Kind, singular, plural string, groupRequired bool, next func() string) reply {
	query := r.URL.Query()
	if groupRequired || query.Has("serviceProviderId") || query.Has("groupId") {
		if rep, ok := s.checkGroup(query.Get("serviceProviderId"), query.Get("groupId"), true); !ok {
			return rep
		}
	}

	limited := query.Has("limit") && (kind != KindSIP || s.sipAcceptsLimit)
	if !limited {
		return reply{
			status: http.StatusOK,
			body:   map[string]string{singular: next()},
			count:  func(st *Stats) { st.Generated[kind]++ },
		}
	}

	limit, err := strconv.Atoi(query.Get("limit"))
	if err != nil || limit < 1 {
		return errorReply(http.StatusBadRequest, "Invalid limit: want a whole number of at least 1")
	}
	if limit > s.maxGenerateLimit {
		return errorReply(http.StatusBadRequest, fmt.Sprintf("Invalid limit %d: at most %d values can be generated at once", limit, s.maxGenerateLimit))
	}
	values := make([]string, limit)
	for i := range values {
		values[i] = next()
	}
	return reply{
		status: http.StatusOK,
		body:   map[string][]string{plural: values},
		count:  func(st *Stats) { st.Generated[kind] += limit },
	}
}

// checkGroup returns false and a reply when the service provider or group is missing
// or is not the simulated one. The group may be omitted when groupRequired is false.
func (s *Simulator) checkGroup(serviceProviderID, groupID string, groupRequired bool) (reply, bool) {
	switch {
	case serviceProviderID == "":
		return errorReply(http.StatusBadRequest, "Missing required parameter: serviceProviderId"), false
	case serviceProviderID != s.serviceProviderID:
		return errorReply(http.StatusNotFound, "Service provider not found: "+serviceProviderID), false
	case groupID == "" && groupRequired:
		return errorReply(http.StatusBadRequest, "Missing required parameter: groupId"), false
	case groupID != "" && groupID != s.groupID:
		return errorReply(http.StatusNotFound, "Group not found: "+groupID), false
	}
	return reply{}, true
}
