package odintest

import (
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
)

type fault int

const (
	faultNone fault = iota
	fault500
	fault502
	faultReset
	faultHang
)

// statsName is the key of the fault in Stats.Faults.
func (f fault) statsName() string {
	switch f {
	case fault500:
		return "500"
	case fault502:
		return "502"
	case faultReset:
		return "reset"
	case faultHang:
		return "hang"
	}
	return ""
}

// drawFault picks the fault for one request, if any, and whether the request is handled
// before the fault replaces its response.
func (s *Simulator) drawFault(authEndpoint bool) (f fault, applyFirst bool) {
	s.controlMu.Lock()
	defer s.controlMu.Unlock()

	faults := s.faults
	if authEndpoint && !faults.IncludeAuth {
		return faultNone, false
	}
	if faults.Error500+faults.Error502HTML+faults.Reset+faults.Hang == 0 {
		return faultNone, false
	}

	float := rand.Float64
	if s.faultRand != nil {
		float = s.faultRand.Float64
	}
	draw := float()
	switch {
	case draw < faults.Error500:
		f = fault500
	case draw < faults.Error500+faults.Error502HTML:
		f = fault502
	case draw < faults.Error500+faults.Error502HTML+faults.Reset:
		f = faultReset
	case draw < faults.Error500+faults.Error502HTML+faults.Reset+faults.Hang:
		f = faultHang
	default:
		return faultNone, false
	}
	return f, faults.ApplyBeforeFault > 0 && float() < faults.ApplyBeforeFault
}

const badGatewayPage = `<html>
<head><title>502 Bad Gateway</title></head>
<body>
<center><h1>502 Bad Gateway</h1></center>
<hr><center>nginx</center>
</body>
</html>
`

const gatewayTimeoutPage = `<html>
<head><title>504 Gateway Time-out</title></head>
<body>
<center><h1>504 Gateway Time-out</h1></center>
<hr><center>nginx</center>
</body>
</html>
`

// injectFault sends the fault instead of the real response and counts it.
func (s *Simulator) injectFault(w http.ResponseWriter, r *http.Request, endpoint string, f fault) {
	count := func(st *Stats) { st.Faults[f.statsName()]++ }

	switch f {
	case fault500:
		writeJSON(w, http.StatusInternalServerError, apiError{
			Error:  "Internal server error",
			Status: http.StatusInternalServerError,
		})
		s.admission.record(endpoint, http.StatusInternalServerError, count)

	case fault502:
		writeHTML(w, http.StatusBadGateway, badGatewayPage)
		s.admission.record(endpoint, http.StatusBadGateway, count)

	case faultReset:
		s.admission.record(endpoint, 0, count)
		resetConnection(w)

	case faultHang:
		s.controlMu.Lock()
		duration := s.faults.HangDuration
		s.controlMu.Unlock()
		if err := sleep(r.Context(), duration); err != nil {
			s.admission.record(endpoint, 0, count)
			return
		}
		writeHTML(w, http.StatusGatewayTimeout, gatewayTimeoutPage)
		s.admission.record(endpoint, http.StatusGatewayTimeout, count)
	}
}

func writeHTML(w http.ResponseWriter, status int, page string) {
	w.Header().Set("Content-Type", "text/html")
	w.Header().Set("Content-Length", strconv.Itoa(len(page)))
	w.WriteHeader(status)
	_, _ = w.Write([]byte(page))
}

// resetConnection closes the client's connection without a response. On TCP it sets
// SO_LINGER to 0 first, so the client gets a RST rather than a clean EOF.
func resetConnection(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	if tcp, ok := conn.(*net.TCPConn); ok {
		_ = tcp.SetLinger(0)
	}
	_ = conn.Close()
}
