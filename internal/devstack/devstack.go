// Package devstack runs a Nostr relay and a Blossom server on one loopback port: everything
// nostr-homed needs from the network, for development and for tests of other packages.
//
// The relay is khatru v0.19.1 with events persisted in eventstore's badger backend under
// DataDir/relay: NIP-01 with replaceable and addressable events (the newest wins: higher
// created_at, then the lower id), NIP-09 deletions, NIP-11, NIP-40 expiration, NIP-45
// COUNT and NIP-77 negentropy. The Blossom server is package blossomserver with its blobs
// under DataDir/blossom. Restarting with the same DataDir keeps both.
//
// # Routing
//
// One http.Server serves both, split by path only:
//
//	path "/"        -> relay: WebSocket upgrades (NIP-01, NIP-77), NIP-11 documents
//	                   (Accept: application/nostr+json), NIP-86 RPC, and a plain-text
//	                   banner for anything else
//	any other path  -> Blossom: /upload, /mirror, /list/<pubkey>, /<sha256>[.ext]
//
// This works because every Blossom endpoint has a non-empty path and a relay is addressed
// at its root. Relay URLs must therefore have no path (ws://host:port); clients that add
// one would reach the Blossom server and get 400.
//
// Package devstacktest starts a Stack (or the nostr-homed-devstack binary) for tests.
package devstack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/fiatjaf/khatru"

	"github.com/nostr-homed/nostr-homed/internal/blossomserver"
)

// RelayName is the relay's NIP-11 name.
const RelayName = "nostr-homed devstack"

// DefaultShutdownTimeout bounds Close.
const DefaultShutdownTimeout = 5 * time.Second

// Options configures Start.
type Options struct {
	// Listen is the TCP address to listen on. Empty means "127.0.0.1:0" (a free port).
	// Start does not check that it is a loopback address; the command does.
	Listen string
	// DataDir holds relay/ (the event store) and blossom/ (blobs). Required.
	DataDir string
	// Logf receives log lines (khatru's, badger's warnings, HTTP server errors). Nil
	// discards them.
	Logf func(format string, args ...any)
	// MaxBlobSize limits Blossom uploads; zero means blossomserver's default (2 GiB).
	MaxBlobSize int64
}

// Stack is a running relay and Blossom server. It is also the http.Handler that routes
// between them (see the package documentation), so it can be mounted elsewhere.
type Stack struct {
	addr    string
	ln      net.Listener
	srv     *http.Server
	relay   *khatru.Relay
	blossom *blossomserver.Server
	store   *guardedStore
	logf    func(string, ...any)

	serveDone chan struct{}
	serveErr  error

	mu      sync.Mutex
	sockets map[*khatru.WebSocket]struct{} // open relay connections
	conns   map[string]net.Conn            // hijacked (WebSocket) connections by remote address
	fresh   map[net.Conn]struct{}          // connections that have not sent a request yet

	closeOnce sync.Once
	closeErr  error
}

// Start opens the stores under opts.DataDir, listens on opts.Listen and serves until Close.
// ctx bounds the start-up only.
func Start(ctx context.Context, opts Options) (*Stack, error) {
	if opts.DataDir == "" {
		return nil, errors.New("devstack: DataDir is required")
	}
	if opts.Listen == "" {
		opts.Listen = "127.0.0.1:0"
	}
	logf := opts.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	relayDir := filepath.Join(opts.DataDir, "relay")
	blossomDir := filepath.Join(opts.DataDir, "blossom")
	for _, d := range []string{opts.DataDir, relayDir, blossomDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("devstack: %w", err)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	store, err := openStore(relayDir, logf)
	if err != nil {
		return nil, err
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", opts.Listen)
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("devstack: %w", err)
	}
	s := &Stack{
		addr:      ln.Addr().String(),
		ln:        ln,
		store:     store,
		logf:      logf,
		serveDone: make(chan struct{}),
		sockets:   make(map[*khatru.WebSocket]struct{}),
		conns:     make(map[string]net.Conn),
		fresh:     make(map[net.Conn]struct{}),
	}

	s.blossom, err = blossomserver.New(blossomDir, blossomserver.Options{
		PublicURL:   s.BlossomURL(),
		MaxBlobSize: opts.MaxBlobSize,
		Logf:        logf,
	})
	if err != nil {
		ln.Close()
		store.Close()
		return nil, err
	}
	s.relay = s.newRelay()

	logWriter := logfWriter(logf)
	s.srv = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          log.New(logWriter, "http: ", 0),
		ConnState:         s.trackConn,
	}
	go func() {
		defer close(s.serveDone)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.serveErr = err
			logf("devstack: serving: %v", err)
		}
	}()
	return s, nil
}

func (s *Stack) newRelay() *khatru.Relay {
	relay := khatru.NewRelay()
	relay.Log = log.New(logfWriter(s.logf), "relay: ", 0)
	// No ServiceURL: khatru then derives its URL (for NIP-42 relay tags) from each request's
	// Host, so clients may use 127.0.0.1 or localhost alike.
	relay.Info.Name = RelayName
	relay.Info.Description = "Development relay and Blossom server of nostr-homed. Blossom: " + s.BlossomURL()
	relay.Info.Software = "https://github.com/nostr-homed/nostr-homed"
	relay.Info.Version = version()
	// What this configuration really does: khatru handles NIP-01, 09 (with DeleteEvent), 11,
	// 40 (its expiration manager), 42 (AUTH), 45 (with CountEvents), 70 (protected events) and
	// 77 (with Negentropy). No NIP-86 management handlers are set, so 86 is not listed.
	relay.Info.SupportedNIPs = []any{1, 9, 11, 40, 42, 45, 70, 77}

	relay.StoreEvent = append(relay.StoreEvent, s.store.SaveEvent)
	relay.ReplaceEvent = append(relay.ReplaceEvent, s.store.ReplaceEvent)
	relay.QueryEvents = append(relay.QueryEvents, s.store.QueryEvents)
	relay.DeleteEvent = append(relay.DeleteEvent, s.store.DeleteEvent)
	relay.CountEvents = append(relay.CountEvents, s.store.CountEvents)
	relay.Negentropy = true

	relay.OnConnect = append(relay.OnConnect, func(ctx context.Context) {
		if ws := khatru.GetConnection(ctx); ws != nil {
			s.mu.Lock()
			s.sockets[ws] = struct{}{}
			s.mu.Unlock()
		}
	})
	relay.OnDisconnect = append(relay.OnDisconnect, func(ctx context.Context) {
		if ws := khatru.GetConnection(ctx); ws != nil {
			s.mu.Lock()
			delete(s.sockets, ws)
			if ws.Request != nil {
				delete(s.conns, ws.Request.RemoteAddr)
			}
			s.mu.Unlock()
		}
	})
	relay.Router().HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintf(w, "%s\nrelay: %s\nblossom: %s\n", RelayName, s.RelayURL(), s.BlossomURL())
	})
	return relay
}

// ServeHTTP routes "/" to the relay and every other path to the Blossom server.
func (s *Stack) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/" {
		s.relay.ServeHTTP(w, r)
		return
	}
	s.blossom.ServeHTTP(w, r)
}

// trackConn remembers hijacked connections (khatru's WebSockets): http.Server.Shutdown does
// not close them, Close does.
func (s *Stack) trackConn(c net.Conn, state http.ConnState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch state {
	case http.StateNew:
		s.fresh[c] = struct{}{}
	case http.StateHijacked:
		delete(s.fresh, c)
		s.conns[c.RemoteAddr().String()] = c
	default:
		delete(s.fresh, c)
	}
}

// closeFresh closes connections that have not sent a request. http.Server.Shutdown counts
// them as busy for their first 5 seconds (a request may be on its way), which would make a
// client's idle pre-dialled connection stall every shutdown; at shutdown no new request is
// wanted, so they can go.
func (s *Stack) closeFresh() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.fresh {
		c.Close()
		delete(s.fresh, c)
	}
}

// Addr is the listening address, host:port.
func (s *Stack) Addr() string { return s.addr }

// RelayURL is the relay's WebSocket URL, ws://host:port.
func (s *Stack) RelayURL() string { return "ws://" + s.addr }

// BlossomURL is the Blossom server's base URL, http://host:port.
func (s *Stack) BlossomURL() string { return "http://" + s.addr }

// Relay is the khatru relay, for tests that want to add hooks. Change it before use.
func (s *Stack) Relay() *khatru.Relay { return s.relay }

// Blossom is the Blossom server.
func (s *Stack) Blossom() *blossomserver.Server { return s.blossom }

// Done is closed when the stack stops serving, after Close or on a listener failure.
func (s *Stack) Done() <-chan struct{} { return s.serveDone }

// Err is the error that stopped serving, if it was not Close. Valid after Done is closed.
func (s *Stack) Err() error {
	select {
	case <-s.serveDone:
		return s.serveErr
	default:
		return nil
	}
}

// Close shuts down gracefully within DefaultShutdownTimeout (see Shutdown).
func (s *Stack) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), DefaultShutdownTimeout)
	defer cancel()
	return s.Shutdown(ctx)
}

// Shutdown stops accepting connections, lets running HTTP requests finish until ctx ends
// (then cuts them), sends relay clients a WebSocket close frame and closes their
// connections, waits for running event-store calls and closes the event store. Only the
// first call does anything; later ones return its result.
func (s *Stack) Shutdown(ctx context.Context) error {
	s.closeOnce.Do(func() { s.closeErr = s.shutdown(ctx) })
	return s.closeErr
}

func (s *Stack) shutdown(ctx context.Context) error {
	var errs []error
	stopFresh := make(chan struct{})
	go func() { // until Shutdown returns: it has closed the listener, so few new ones arrive
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			s.closeFresh()
			select {
			case <-stopFresh:
				return
			case <-tick.C:
			}
		}
	}()
	err := s.srv.Shutdown(ctx)
	close(stopFresh)
	if err != nil {
		errs = append(errs, fmt.Errorf("devstack: HTTP requests still running: %w", err))
		s.srv.Close()
	}
	<-s.serveDone

	s.mu.Lock()
	sockets := make([]*khatru.WebSocket, 0, len(s.sockets))
	for ws := range s.sockets {
		sockets = append(sockets, ws)
	}
	conns := make([]net.Conn, 0, len(s.conns))
	for _, c := range s.conns {
		conns = append(conns, c)
	}
	clear(s.conns)
	s.mu.Unlock()

	// Close frames, each bounded: a client that does not read must not stall shutdown.
	var wg sync.WaitGroup
	for _, ws := range sockets {
		wg.Go(func() { ws.WriteMessage(closeMessage, goingAway) })
	}
	waitBounded(&wg, ctx, time.Second)
	for _, c := range conns {
		c.Close()
	}

	s.store.Close()
	return errors.Join(errs...)
}

// WebSocket close frame: opcode 8, status 1001 "going away" (RFC 6455 section 7.4.1).
const closeMessage = 8

var goingAway = append([]byte{0x03, 0xe9}, "relay shutting down"...)

// waitBounded waits for wg, at most d and not beyond ctx.
func waitBounded(wg *sync.WaitGroup, ctx context.Context, d time.Duration) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	case <-ctx.Done():
	}
}

// logfWriter adapts a Logf function to the io.Writer a log.Logger wants.
type logfWriter func(string, ...any)

func (f logfWriter) Write(p []byte) (int, error) {
	f("%s", strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

var _ io.Writer = logfWriter(nil)

// version is the module version and VCS revision the binary was built from, if known.
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	v := bi.Main.Version
	if v == "" || v == "(devel)" {
		v = "devel"
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			v += "+" + s.Value[:12]
		}
	}
	return v
}
