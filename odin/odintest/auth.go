package odintest

import (
	"crypto/subtle"
	"net/http"
)

// passwordExpiresDays is the session field for an admin password that never expires, as
// BroadWorks reports it.
const passwordExpiresDays = 2147483647

// session is the body of a successful login or refresh.
type session struct {
	Token               string `json:"token"`
	LoginType           string `json:"loginType"`
	UserID              string `json:"userId"`
	PasswordExpiresDays int    `json:"passwordExpiresDays"`
}

type loginRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

// login handles POST /auth/token: 401 for wrong credentials, 402 when the admin must
// change the password, else a new session.
func (s *Simulator) login(r *http.Request) reply {
	var req loginRequest
	if rep, ok := decodeBody(r, &req); !ok {
		return rep
	}
	if req.Username == "" || req.Password == "" {
		return errorReply(http.StatusBadRequest, "username and password are required")
	}

	s.controlMu.Lock()
	username, password := s.username, s.password
	changeRequired := s.passwordChangeRequired
	lifetime, generation := s.tokenLifetime, s.tokenGeneration
	s.controlMu.Unlock()

	userOK := subtle.ConstantTimeCompare([]byte(req.Username), []byte(username)) == 1
	passwordOK := subtle.ConstantTimeCompare([]byte(req.Password), []byte(password)) == 1
	if !userOK || !passwordOK {
		return errorReply(http.StatusUnauthorized, "Invalid username or password")
	}
	if changeRequired {
		return errorReply(http.StatusPaymentRequired, "Password change required: the password has expired and must be changed before login")
	}

	return reply{
		status: http.StatusOK,
		body: session{
			Token:               s.signer.issue(username, s.now(), lifetime, generation),
			LoginType:           "System",
			UserID:              username,
			PasswordExpiresDays: passwordExpiresDays,
		},
		count: func(st *Stats) { st.Logins++ },
	}
}

// refresh handles PUT /auth/token: a valid, unexpired bearer token buys a new session.
func (s *Simulator) refresh(r *http.Request) reply {
	s.controlMu.Lock()
	lifetime, generation := s.tokenLifetime, s.tokenGeneration
	s.controlMu.Unlock()

	now := s.now()
	claims, err := s.signer.verify(r.Header.Get("Authorization"), now, generation)
	if err != nil {
		return errorReply(http.StatusUnauthorized, err.Error())
	}

	return reply{
		status: http.StatusOK,
		body: session{
			Token:               s.signer.issue(claims.Subject, now, lifetime, generation),
			LoginType:           "System",
			UserID:              claims.Subject,
			PasswordExpiresDays: passwordExpiresDays,
		},
		count: func(st *Stats) { st.Refreshes++ },
	}
}
