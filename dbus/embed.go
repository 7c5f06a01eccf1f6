// Package dbus carries the project's D-Bus files: the introspection XML of org.nostr.Homed1
// and org.nostr.Signer (embedded here so the daemon serves exactly the interfaces that are
// documented) and the bus policy, installed to /usr/share/dbus-1/system.d by `make install`.
package dbus

import _ "embed"

// Homed1XML is dbus/org.nostr.Homed1.xml.
//
//go:embed org.nostr.Homed1.xml
var Homed1XML string

// SignerXML is dbus/org.nostr.Signer.xml: the interface of a session's signer,
// /org/nostr/Homed1/signer/UID.
//
//go:embed org.nostr.Signer.xml
var SignerXML string
