package odintest

import (
	"net/http"
	"slices"
)

// serviceNotAssigned is BroadWorks' error for a request that needs a service the user
// does not have.
func serviceNotAssigned(service string) reply {
	return errorReply(http.StatusBadRequest, "[Error 4410] Service is not assigned to this subscriber: "+service)
}

func userNotFound(userID string) reply {
	return errorReply(http.StatusNotFound, "[Error 4008] User not found: "+userID)
}

func missingField(name string) reply {
	return errorReplyDetails(http.StatusBadRequest, "Missing required field: "+name, map[string]string{"field": name})
}

func ruleViolation(message, field string) reply {
	return errorReplyDetails(http.StatusBadRequest, message, map[string]string{"field": field})
}

// lookupUser returns the user named by a userId parameter, or false and a 400 or 404
// reply.
func (s *Simulator) lookupUser(userID string) (*user, reply, bool) {
	if userID == "" {
		return nil, missingField("userId"), false
	}
	u := s.usersByID[userID]
	if u == nil {
		return nil, userNotFound(userID), false
	}
	return u, reply{}, true
}

// setCredential stores value as the user's credential of kind, unless the user rejects
// it by the RejectFirst rule. It returns the history error text on rejection, else "".
func (s *Simulator) setCredential(u *user, kind Kind, value string) string {
	s.mu.Lock()
	defer s.mu.Unlock()

	c := &u.creds[kindIndex(kind)]
	if u.rejectsFirstValues && (len(c.rejected) == 0 && c.setCount == 0 || slices.Contains(c.rejected, value)) {
		c.rejected = append(c.rejected, value)
		return historyRejection(kind)
	}
	c.value = value
	c.setCount++
	c.history = append(c.history, value)
	return ""
}

type authenticationResponse struct {
	UserID      string `json:"userId"`
	UserName    string `json:"userName"`
	NewPassword string `json:"newPassword"`
}

// getAuthentication handles GET /users/authentication?userId=.
func (s *Simulator) getAuthentication(r *http.Request) reply {
	u, rep, ok := s.lookupUser(r.URL.Query().Get("userId"))
	if !ok {
		return rep
	}
	if !u.hasAuthentication {
		return serviceNotAssigned("Authentication")
	}
	return reply{status: http.StatusOK, body: map[string]string{"userId": u.id, "userName": u.userName}}
}

type putAuthenticationRequest struct {
	UserID      string `json:"userId"`
	UserName    string `json:"userName"`
	NewPassword string `json:"newPassword"`
}

// putAuthentication handles PUT /users/authentication, which sets the SIP password. The
// body must carry the user's current userName.
func (s *Simulator) putAuthentication(r *http.Request) reply {
	var req putAuthenticationRequest
	if rep, ok := decodeBody(r, &req); !ok {
		return rep
	}
	u, rep, ok := s.lookupUser(req.UserID)
	if !ok {
		return rep
	}
	if !u.hasAuthentication {
		return serviceNotAssigned("Authentication")
	}
	switch {
	case req.UserName == "":
		return missingField("userName")
	case req.UserName != u.userName:
		return ruleViolation("[Error 4003] Invalid userName: it does not match the user's authentication user name", "userName")
	case req.NewPassword == "":
		return missingField("newPassword")
	}
	if reason := s.rules.checkSIPPassword(req.NewPassword, u.userName); reason != "" {
		return ruleViolation(reason, "newPassword")
	}
	if reason := s.setCredential(u, KindSIP, req.NewPassword); reason != "" {
		return ruleViolation(reason, "newPassword")
	}
	return reply{status: http.StatusOK, body: authenticationResponse{UserID: u.id, UserName: u.userName}}
}

type putPasswordRequest struct {
	UserID      string `json:"userId"`
	NewPassword string `json:"newPassword"`
}

// putWebPassword handles PUT /users/passwords, which sets the web portal password.
func (s *Simulator) putWebPassword(r *http.Request) reply {
	var req putPasswordRequest
	if rep, ok := decodeBody(r, &req); !ok {
		return rep
	}
	u, rep, ok := s.lookupUser(req.UserID)
	if !ok {
		return rep
	}
	if req.NewPassword == "" {
		return missingField("newPassword")
	}
	if reason := s.rules.checkWebPassword(req.NewPassword, u.id); reason != "" {
		return ruleViolation(reason, "newPassword")
	}
	if reason := s.setCredential(u, KindWeb, req.NewPassword); reason != "" {
		return ruleViolation(reason, "newPassword")
	}
	return reply{status: http.StatusOK, body: map[string]string{"userId": u.id}}
}

// getPortalPasscode handles GET /users/portal-passcode?userId=. The passcode is masked,
// as Odin does.
func (s *Simulator) getPortalPasscode(r *http.Request) reply {
	u, rep, ok := s.lookupUser(r.URL.Query().Get("userId"))
	if !ok {
		return rep
	}
	if !u.hasVoiceMessaging {
		return serviceNotAssigned("Voice Messaging User")
	}
	return reply{status: http.StatusOK, body: map[string]any{
		"userId":          u.id,
		"isLoginDisabled": false,
		"expirationDays":  30,
		"passcode":        "*****",
	}}
}

type putPasscodeRequest struct {
	UserID      string `json:"userId"`
	NewPasscode string `json:"newPasscode"`
}

// putPortalPasscode handles PUT /users/portal-passcode. The passcode must be a JSON
// string of digits, and a success returns [] as Odin does.
func (s *Simulator) putPortalPasscode(r *http.Request) reply {
	var req putPasscodeRequest
	if rep, ok := decodeBody(r, &req); !ok {
		return rep
	}
	u, rep, ok := s.lookupUser(req.UserID)
	if !ok {
		return rep
	}
	if !u.hasVoiceMessaging {
		return serviceNotAssigned("Voice Messaging User")
	}
	if req.NewPasscode == "" {
		return missingField("newPasscode")
	}
	if reason := s.rules.checkPasscode(req.NewPasscode); reason != "" {
		return ruleViolation(reason, "newPasscode")
	}
	if reason := s.setCredential(u, KindVoicemail, req.NewPasscode); reason != "" {
		return ruleViolation(reason, "newPasscode")
	}
	return reply{status: http.StatusOK, body: []string{}}
}
