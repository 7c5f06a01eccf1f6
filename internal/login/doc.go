// Package login issues and verifies the proofs with which a user logs in to a machine with
// their Nostr key, and produces them with either login method of org.nostr.Homed1.
//
// # The proof
//
// A login proof is an event of kind 29242 (KindLoginProof, ephemeral, our own) signed by the
// user's enrolled key:
//
//	{"kind": 29242, "created_at": <issue time>,
//	 "tags": [["challenge", <32 random bytes, hex>], ["host", <hostname>],
//	          ["service", <PAM service>], ["expiration", <unix seconds>]],
//	 "content": "nostr-homed login to <hostname>"}
//
// The daemon's Issuer makes the challenge (Begin) and checks the answer (Verify). A proof is
// fresh (it expires after the Issuer's TTL, 60 s by default), single use (the first Verify of a
// login consumes it, whatever the outcome), bound to one login, host and service (its tags
// must be exactly those issued), and must be signed by the key enrolled for the user. The
// kind keeps it apart from NIP-42 relay AUTH (22242), Blossom authorization (24242) and
// NIP-98 HTTP auth (27235): an event the user signed for one of those is never a login.
//
// # The methods
//
//   - password: ProveWithPassword unlocks the user's NIP-49 ncryptsec into locked memory
//     (internal/keys), checks it is the enrolled key, and signs. The daemon keeps the
//     keys.Secret for the session.
//   - remote signer (NIP-46): ProveWithBunker for a bunker:// URI (the signer initiated the
//     connection), or NewNostrConnect for a nostrconnect:// URI shown to the user (the client
//     initiates); then ProveWithSigner. The RemoteSigner stays connected for the session.
//
// The daemon's CompleteLogin is then: Lookup the challenge, prove, Verify, keep the signer
// on success; on any failure, Wipe or Close the signer and Cancel the login if Verify was not
// reached. DBusErrorName maps errors to org.nostr.Homed1 error names.
package login
