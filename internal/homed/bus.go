// Package homed is the nostr-homectl daemon's D-Bus face: it exports org.nostr.Homed1 (see
// dbus/org.nostr.Homed1.xml) on the system bus, authorises every call by the caller's UID, and
// turns the service's errors into the typed D-Bus errors the PAM module maps to PAM codes.
//
// Authorisation is done twice, on purpose. The bus policy (dbus/org.nostr.Homed1.conf) denies
// by default and lets each method through by name; this package then asks the bus for the
// caller's UID (GetConnectionUnixUser) and allows logins, sessions, ending a user's sessions
// and cache warming only for root, and status only for root and the user it is about. A
// mistake in one fence is caught by the other.
//
// WarmCache reports its progress as WarmProgress signals sent to the caller alone (see
// progressTo).
//
// The work itself is behind the Service interface, implemented by the daemon; this package
// holds no state. godbus runs each incoming call in its own goroutine, so a CompleteLogin that
// waits for a remote signer does not hold up other callers.
package homed

import (
	"context"
	"errors"
	"fmt"

	"github.com/godbus/dbus/v5"
	"github.com/godbus/dbus/v5/introspect"
)

// Bus names.
const (
	BusName    = "org.nostr.Homed1"
	ObjectPath = dbus.ObjectPath("/org/nostr/Homed1")
	Interface  = "org.nostr.Homed1"
)

// Error names, as dbus/org.nostr.Homed1.xml lists them.
const (
	ErrUnknownUser   = Interface + ".Error.UnknownUser"
	ErrAccessDenied  = Interface + ".Error.AccessDenied"
	ErrAuthFailed    = Interface + ".Error.AuthFailed"
	ErrProofExpired  = Interface + ".Error.ProofExpired"
	ErrProofReplayed = Interface + ".Error.ProofReplayed"
	ErrNotAllowed    = Interface + ".Error.NotAllowed"
	ErrUnavailable   = Interface + ".Error.Unavailable"
	ErrTimeout       = Interface + ".Error.Timeout"
	ErrMountFailed   = Interface + ".Error.MountFailed"
	ErrInvalidArgs   = Interface + ".Error.InvalidArgs"
	errFailed        = Interface + ".Error.Failed" // anything unclassified
)

// Error is a service error that carries its D-Bus name. The service returns these (or wraps
// them); anything else goes out as org.nostr.Homed1.Error.Failed.
type Error struct {
	Name string
	Err  error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Errorf builds an *Error with a message for a person.
func Errorf(name, format string, args ...any) error {
	return &Error{Name: name, Err: fmt.Errorf(format, args...)}
}

func toDBus(err error) *dbus.Error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return dbus.NewError(e.Name, []any{err.Error()})
	}
	return dbus.NewError(errFailed, []any{err.Error()})
}

// LoginStart is BeginLogin's answer (see the XML for each field).
type LoginStart struct {
	LoginID, Method, Prompt, Message, URI string
}

// Progress receives the stages of a long call as they happen (see the Stage constants). It
// may be called from several goroutines at once. A nil Progress is valid: no reports.
type Progress func(stage, detail string)

// Report calls p if it is not nil.
func (p Progress) Report(stage, detail string) {
	if p != nil {
		p(stage, detail)
	}
}

// SignalWarmProgress is the member name of WarmCache's progress signal.
const SignalWarmProgress = "WarmProgress"

// Stages of a warm, as WarmProgress carries them (see dbus/org.nostr.Homed1.xml). StageDone
// or StageFailed is always the last one of a warm that started.
const (
	StageStart    = "start"     // what is warmed, and whether settings are cached
	StageAsking   = "asking"    // which kinds are asked of which relays
	StageAnswered = "answered"  // how many relays answered the query of one kind
	StageFound    = "found"     // the newest valid event of one kind, and whether it is new
	StageNotFound = "not-found" // no event of one kind on the relays that answered
	StageRefused  = "refused"   // an event a relay sent that is not valid
	StageDone     = "done"      // the warm succeeded: a summary
	StageFailed   = "failed"    // the warm failed: why
)

// Service is the daemon's work, called only after the caller has been authorised.
type Service interface {
	BeginLogin(ctx context.Context, user, service, rhost string) (LoginStart, error)
	CompleteLogin(ctx context.Context, loginID, secret string) error
	CancelLogin(ctx context.Context, loginID string) error
	CheckAccount(ctx context.Context, user string) error
	OpenSession(ctx context.Context, user string) error
	CloseSession(ctx context.Context, user string) error
	// TerminateSessions ends every session of user whatever its count, drops a pending
	// login signer and outstanding logins of user, and returns how many sessions were open.
	TerminateSessions(ctx context.Context, user string) (uint32, error)
	// WarmCache warms the cache and reports its stages to progress as it goes.
	WarmCache(ctx context.Context, target string, progress Progress) error
	Status(ctx context.Context, user string) (string, error)
	// UIDOf returns the UID of an enrolled user, for authorising GetStatus.
	UIDOf(user string) (uint32, error)
}

// object is what is exported: one method per D-Bus method, each starting with the check.
type object struct {
	conn *dbus.Conn
	svc  Service
	ctx  context.Context
}

// callerUID asks the bus who sent the message.
func (o *object) callerUID(sender dbus.Sender) (uint32, *dbus.Error) {
	var uid uint32
	err := o.conn.BusObject().Call("org.freedesktop.DBus.GetConnectionUnixUser", 0, string(sender)).Store(&uid)
	if err != nil {
		return 0, toDBus(Errorf(ErrAccessDenied, "cannot tell who is calling: %v", err))
	}
	return uid, nil
}

func (o *object) rootOnly(sender dbus.Sender, method string) *dbus.Error {
	uid, derr := o.callerUID(sender)
	if derr != nil {
		return derr
	}
	if uid != 0 {
		return toDBus(Errorf(ErrAccessDenied, "%s is for root only (caller uid %d)", method, uid))
	}
	return nil
}

func (o *object) BeginLogin(sender dbus.Sender, user, service, rhost string) (string, string, string, string, string, *dbus.Error) {
	if derr := o.rootOnly(sender, "BeginLogin"); derr != nil {
		return "", "", "", "", "", derr
	}
	ls, err := o.svc.BeginLogin(o.ctx, user, service, rhost)
	if err != nil {
		return "", "", "", "", "", toDBus(err)
	}
	return ls.LoginID, ls.Method, ls.Prompt, ls.Message, ls.URI, nil
}

func (o *object) CompleteLogin(sender dbus.Sender, loginID, secret string) *dbus.Error {
	if derr := o.rootOnly(sender, "CompleteLogin"); derr != nil {
		return derr
	}
	return toDBus(o.svc.CompleteLogin(o.ctx, loginID, secret))
}

func (o *object) CancelLogin(sender dbus.Sender, loginID string) *dbus.Error {
	if derr := o.rootOnly(sender, "CancelLogin"); derr != nil {
		return derr
	}
	return toDBus(o.svc.CancelLogin(o.ctx, loginID))
}

func (o *object) CheckAccount(sender dbus.Sender, user string) *dbus.Error {
	if derr := o.rootOnly(sender, "CheckAccount"); derr != nil {
		return derr
	}
	return toDBus(o.svc.CheckAccount(o.ctx, user))
}

func (o *object) OpenSession(sender dbus.Sender, user string) *dbus.Error {
	if derr := o.rootOnly(sender, "OpenSession"); derr != nil {
		return derr
	}
	return toDBus(o.svc.OpenSession(o.ctx, user))
}

func (o *object) CloseSession(sender dbus.Sender, user string) *dbus.Error {
	if derr := o.rootOnly(sender, "CloseSession"); derr != nil {
		return derr
	}
	return toDBus(o.svc.CloseSession(o.ctx, user))
}

func (o *object) TerminateSessions(sender dbus.Sender, user string) (uint32, *dbus.Error) {
	if derr := o.rootOnly(sender, "TerminateSessions"); derr != nil {
		return 0, derr
	}
	n, err := o.svc.TerminateSessions(o.ctx, user)
	return n, toDBus(err)
}

func (o *object) WarmCache(sender dbus.Sender, target string) *dbus.Error {
	if derr := o.rootOnly(sender, "WarmCache"); derr != nil {
		return derr
	}
	return toDBus(o.svc.WarmCache(o.ctx, target, o.progressTo(sender, target)))
}

// progressTo returns a Progress that sends each stage as an org.nostr.Homed1.WarmProgress
// signal to the caller alone.
//
// Unicast, not broadcast: conn.Emit sends a signal without a destination, which the bus
// delivers to every connection with a matching rule, so any local user could watch which
// user or npub root is warming and what its relays answer. A signal with a destination
// header goes to that connection only (and to monitors, which need root). godbus has no
// helper for that, so the message is built here; conn.Send writes it out before the method
// returns, and the bus keeps the order of one sender's messages to one receiver, so every
// signal of a call reaches the caller before its reply.
//
// The bus policy must let root send the signal and the caller receive it
// (dbus/org.nostr.Homed1.conf allows both explicitly; Debian's system.conf also allows
// signals by default). Callers should check that a signal comes from the owner of BusName:
// the default policy lets any connection send signals to any other.
func (o *object) progressTo(sender dbus.Sender, target string) Progress {
	return func(stage, detail string) {
		msg := &dbus.Message{
			Type: dbus.TypeSignal,
			Headers: map[dbus.HeaderField]dbus.Variant{
				dbus.FieldPath:        dbus.MakeVariant(ObjectPath),
				dbus.FieldInterface:   dbus.MakeVariant(Interface),
				dbus.FieldMember:      dbus.MakeVariant(SignalWarmProgress),
				dbus.FieldDestination: dbus.MakeVariant(string(sender)),
				dbus.FieldSignature:   dbus.MakeVariant(dbus.SignatureOf(target, stage, detail)),
			},
			Body: []any{target, stage, detail},
		}
		o.conn.Send(msg, nil) // best effort: a caller that has gone away misses nothing it needs
	}
}

func (o *object) GetStatus(sender dbus.Sender, user string) (string, *dbus.Error) {
	uid, derr := o.callerUID(sender)
	if derr != nil {
		return "", derr
	}
	if uid != 0 {
		// Only the user in question. An unknown user gives the same answer as another user's,
		// so an unprivileged caller cannot probe who is enrolled.
		owner, err := o.svc.UIDOf(user)
		if err != nil || owner != uid {
			return "", toDBus(Errorf(ErrAccessDenied, "status of %q is for root and that user only", user))
		}
	}
	s, err := o.svc.Status(o.ctx, user)
	return s, toDBus(err)
}

// Export publishes svc on conn under BusName and ObjectPath, with introspection data read
// from the interface XML, and requests the name. ctx is handed to every service call and
// should be cancelled at daemon shutdown.
func Export(ctx context.Context, conn *dbus.Conn, svc Service, introspectXML string) error {
	o := &object{conn: conn, svc: svc, ctx: ctx}
	if err := conn.Export(o, ObjectPath, Interface); err != nil {
		return err
	}
	if err := conn.Export(introspect.Introspectable(introspectXML), ObjectPath, "org.freedesktop.DBus.Introspectable"); err != nil {
		return err
	}
	reply, err := conn.RequestName(BusName, dbus.NameFlagDoNotQueue)
	if err != nil {
		return fmt.Errorf("homed: requesting %s: %w", BusName, err)
	}
	if reply != dbus.RequestNameReplyPrimaryOwner {
		return fmt.Errorf("homed: %s is already owned on this bus (is another nostr-homectl running?)", BusName)
	}
	return nil
}
