package odintest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"
)

// Server is a Simulator served over HTTP on a loopback port, so that connection resets
// and hangs behave as they do on a network.
type Server struct {
	*Simulator
	// URL is the API base URL, such as "http://127.0.0.1:41234/api/v2".
	URL string

	root     string
	server   *http.Server
	serveErr chan error
	close    sync.Once

	mu       sync.Mutex // guards closed and orders inFlight.Add before inFlight.Wait
	closed   bool
	inFlight sync.WaitGroup
}

// NewServer starts a Simulator for cfg on 127.0.0.1 at a free port. Call Close to stop it.
func NewServer(cfg Config) (*Server, error) {
	sim, err := New(cfg)
	if err != nil {
		return nil, err
	}
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("odintest: listening on 127.0.0.1: %w", err)
	}
	return Serve(sim, listener), nil
}

// Serve serves sim on listener until Close. The URLs are built from the listener's
// address.
func Serve(sim *Simulator, listener net.Listener) *Server {
	root := "http://" + listener.Addr().String()
	s := &Server{
		Simulator: sim,
		URL:       root + apiPrefix,
		root:      root,
		serveErr:  make(chan error, 1),
	}
	s.server = &http.Server{
		Handler:           http.HandlerFunc(s.serveTracked),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go func() {
		err := s.server.Serve(listener)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		s.serveErr <- err
	}()
	return s
}

func (s *Server) serveTracked(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		w.Header().Set("Connection", "close")
		writeJSON(w, http.StatusServiceUnavailable, apiError{Error: "The simulator is shutting down", Status: http.StatusServiceUnavailable})
		return
	}
	s.inFlight.Add(1)
	s.mu.Unlock()

	defer s.inFlight.Done()
	s.Simulator.ServeHTTP(w, r)
}

// Root returns the server's root URL, such as "http://127.0.0.1:41234", under which the
// inspection endpoints live at /_sim/.
func (s *Server) Root() string { return s.root }

// Shutdown stops accepting requests and waits for running ones to finish, until ctx
// ends. Then it closes every connection as Close does. It returns ctx's error when
// requests were still running.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.server.Shutdown(ctx)
	s.Close()
	return err
}

// Close closes the listener and every connection, then waits for running handlers to
// return. Hanging and delayed requests end early because their contexts are cancelled.
func (s *Server) Close() {
	s.close.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()

		_ = s.server.Close()
		<-s.serveErr
		s.inFlight.Wait()
	})
}
