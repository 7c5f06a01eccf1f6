#!/usr/bin/python3
"""fake_homed.py: a FAKE, scripted stand-in for the nostr-homectl daemon, for pam/test.sh only.

It is NOT the daemon and implements none of its logic: it owns org.nostr.Homed1 on a private
test bus and answers the methods of dbus/org.nostr.Homed1.xml with canned replies, so that
the test can check how pam_nostr.so maps each reply and error to a PAM result. It appends
one line per call to a log file so the test can check what the module sent.

Script (user -> behaviour):
  BeginLogin   alice: method "password", prompt "Password: "
               dave:  method "remote-signer" with a message and a nostrconnect:// uri
               hank, ivan, judy: method "remote-signer" with the uri of REMOTE_URIS below
               erin:  method "telepathy" (one the module does not know)
               frank: error Unavailable
               gina:  error org.freedesktop.DBus.Error.Spawn.ServiceNotFound (what the system
                      bus's activation helper answers when the daemon has no service file),
                      also from CheckAccount and OpenSession
               anyone else (carol): error UnknownUser
  CompleteLogin  alice's logins: success iff secret == "right-password", else AuthFailed;
                 a login_id used twice: ProofReplayed.
                 dave's logins: answers (success) only after --signer-delay seconds.
                 hank's, ivan's and judy's logins: success at once.
  CancelLogin    logged.
  CheckAccount   alice: ok; bob: NotAllowed; gina: Spawn.ServiceNotFound; anyone else: UnknownUser.
  OpenSession    alice: ok (logged); bob: MountFailed; gina: Spawn.ServiceNotFound;
                 anyone else: UnknownUser.
  CloseSession   alice: ok (logged); anyone else: UnknownUser.

Usage: fake_homed.py --address BUS_ADDRESS --log FILE --ready FILE [--signer-delay SECONDS]
       fake_homed.py --print-uri USER    (prints the uri BeginLogin gives USER; no bus needed)
Needs python3-dbus and python3-gi (Debian packages).
"""
import argparse
import itertools
import sys

import dbus
import dbus.mainloop.glib
import dbus.service
from gi.repository import GLib

NAME = "org.nostr.Homed1"
PATH = "/org/nostr/Homed1"
IFACE = "org.nostr.Homed1"
ERR = "org.nostr.Homed1.Error."

_PK = "3bf0c63fcb93463407af97a5e5ee64fa883d107ef9e558472c4eb9aaaefa459d"
_LONG = ("nostrconnect://" + _PK +
         "?relay=wss%3A%2F%2Frelay.one.invalid&relay=wss%3A%2F%2Frelay.two.invalid"
         "&relay=wss%3A%2F%2Frelay.three.invalid&secret=0f1e2d3c4b5a69788796a5b4c3d2e1f0"
         "&perms=sign_event%3A22242%2Cnip44_encrypt%2Cnip44_decrypt%2Cget_public_key"
         "&name=nostr-homed%20login&url=https%3A%2F%2Fhost.invalid%2Fnostr-homed%2Flogin"
         "%3Fservice%3Dsshd")
# The remote-signer logins and their uri. Sizes matter to pam/test.sh: dave's (123 bytes)
# makes a 41-module QR at level M; hank's (398 bytes) is 77 modules at M and 69 at L, so with
# the quiet zone only L fits 80 columns; ivan's (486 bytes) is 77 modules even at L, too wide.
REMOTE_URIS = {
    "dave": "nostrconnect://0000000000000000000000000000000000000000000000000000000000000001"
            "?relay=wss%3A%2F%2Frelay.invalid&secret=fake",
    "hank": _LONG,
    "ivan": _LONG + "&image=https%3A%2F%2Fhost.invalid%2Fnostr-homed%2Flogo-for-the-signer-app.png"
                    "&theme=dark",
    "judy": "https://signer.invalid/approve?login=1",  # not nostrconnect: no QR code
}


def homed_error(short, message):
    return named_error(ERR + short, message)


def named_error(name, message):
    class E(dbus.DBusException):
        _dbus_error_name = name

    return E(message)


def spawn_not_found():
    return named_error("org.freedesktop.DBus.Error.Spawn.ServiceNotFound",
                       "org.nostr.Homed1 has no service file (fake, not the bus)")


class FakeHomed(dbus.service.Object):
    def __init__(self, bus, log_path, signer_delay):
        super().__init__(bus, PATH)
        self.log_file = open(log_path, "a", buffering=1)
        self.signer_delay = signer_delay
        self.logins = {}  # login_id -> [user, used]
        self.ids = itertools.count(1)

    def log(self, *words):
        self.log_file.write(" ".join(str(w) for w in words) + "\n")

    @dbus.service.method(IFACE, in_signature="sss", out_signature="sssss")
    def BeginLogin(self, user, service, rhost):
        self.log("BeginLogin", user, service, rhost or "-")
        if user in ("alice", "erin") or user in REMOTE_URIS:
            login_id = "L%d-%s" % (next(self.ids), user)
            self.logins[login_id] = [user, False]
            if user == "alice":
                return (login_id, "password", "Password: ", "", "")
            if user in REMOTE_URIS:
                return (login_id, "remote-signer", "",
                        "Approve this login in your Nostr signer app (fake).", REMOTE_URIS[user])
            return (login_id, "telepathy", "", "", "")
        if user == "frank":
            raise homed_error("Unavailable", "relays cannot be reached (fake)")
        if user == "gina":
            raise spawn_not_found()
        raise homed_error("UnknownUser", "%s is not enrolled here (fake)" % user)

    @dbus.service.method(IFACE, in_signature="ss", out_signature="",
                         async_callbacks=("on_ok", "on_error"))
    def CompleteLogin(self, login_id, secret, on_ok, on_error):
        entry = self.logins.get(login_id)
        if entry is None:
            self.log("CompleteLogin", login_id, "unknown-login")
            on_error(homed_error("InvalidArgs", "unknown login_id (fake)"))
            return
        user, used = entry
        if used:
            self.log("CompleteLogin", login_id, "replayed")
            on_error(homed_error("ProofReplayed", "this login was already used (fake)"))
            return
        entry[1] = True
        if user == "dave":
            self.log("CompleteLogin", login_id, "waiting-for-signer")

            def answer():
                self.log("CompleteLogin", login_id, "signer-answered")
                on_ok()
                return False

            GLib.timeout_add(int(self.signer_delay * 1000), answer)
            return
        if user in REMOTE_URIS:
            self.log("CompleteLogin", login_id, "signer-answered")
            on_ok()
            return
        if secret == "right-password":
            self.log("CompleteLogin", login_id, "ok")
            on_ok()
        else:
            self.log("CompleteLogin", login_id, "auth-failed")
            on_error(homed_error("AuthFailed", "wrong password (fake)"))

    @dbus.service.method(IFACE, in_signature="s", out_signature="")
    def CancelLogin(self, login_id):
        self.log("CancelLogin", login_id)
        self.logins.pop(login_id, None)

    @dbus.service.method(IFACE, in_signature="s", out_signature="")
    def CheckAccount(self, user):
        self.log("CheckAccount", user)
        if user == "alice":
            return
        if user == "gina":
            raise spawn_not_found()
        if user == "bob":
            raise homed_error("NotAllowed", "the login policy refuses bob (fake)")
        raise homed_error("UnknownUser", "%s is not enrolled here (fake)" % user)

    @dbus.service.method(IFACE, in_signature="s", out_signature="")
    def OpenSession(self, user):
        self.log("OpenSession", user)
        if user == "alice":
            return
        if user == "gina":
            raise spawn_not_found()
        if user == "bob":
            raise homed_error("MountFailed", "the home could not be mounted (fake)")
        raise homed_error("UnknownUser", "%s is not enrolled here (fake)" % user)

    @dbus.service.method(IFACE, in_signature="s", out_signature="")
    def CloseSession(self, user):
        self.log("CloseSession", user)
        if user != "alice":
            raise homed_error("UnknownUser", "%s is not enrolled here (fake)" % user)


def main():
    ap = argparse.ArgumentParser(description="FAKE org.nostr.Homed1 for pam/test.sh")
    ap.add_argument("--address")
    ap.add_argument("--log")
    ap.add_argument("--ready")
    ap.add_argument("--signer-delay", type=float, default=6.0)
    ap.add_argument("--print-uri", metavar="USER", choices=sorted(REMOTE_URIS))
    args = ap.parse_args()
    if args.print_uri:
        print(REMOTE_URIS[args.print_uri])
        return 0
    if not (args.address and args.log and args.ready):
        ap.error("--address, --log and --ready are required")

    dbus.mainloop.glib.DBusGMainLoop(set_as_default=True)
    bus = dbus.bus.BusConnection(args.address)
    # Keep a reference: the name is released when the BusName object is collected.
    name = dbus.service.BusName(NAME, bus, do_not_queue=True)
    homed = FakeHomed(bus, args.log, args.signer_delay)
    with open(args.ready, "w") as f:
        f.write("ready\n")
    loop = GLib.MainLoop()
    try:
        loop.run()
    finally:
        del homed, name


if __name__ == "__main__":
    sys.exit(main())
