-- nostr-homed user cache, schema version 1.
--
-- This file is the contract between nostr-homectl (the only writer, package userdb) and
-- libnss_nostr (nss/, a read-only reader). The tables here hold nothing secret: the database
-- file is world-readable (0644) because every process that resolves a user name loads the NSS
-- module. Anything sensitive (locked keys, manifests, secrets) lives in other files with
-- tight modes.
--
-- The NSS module reads only: users(name, uid, gid, gecos, home, shell),
-- groups(name, gid), members(gid, user_name), and meta('schema_version').
-- Changing any of those columns is a schema version bump that the NSS module must follow.
-- userdb applies this whole file on every open (every statement is idempotent), so a new
-- table the NSS module does not read is added here without a version bump.

PRAGMA journal_mode = WAL;

CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- One row per enrolled user.
CREATE TABLE IF NOT EXISTS users (
    pubkey      TEXT PRIMARY KEY CHECK (length(pubkey) = 64), -- hex x-only public key
    name        TEXT NOT NULL UNIQUE,                         -- POSIX login name
    uid         INTEGER NOT NULL UNIQUE,
    gid         INTEGER NOT NULL,                             -- primary group (private, gid = uid)
    gecos       TEXT NOT NULL DEFAULT '',
    home        TEXT NOT NULL,
    shell       TEXT NOT NULL,
    enrolled_at INTEGER NOT NULL                              -- unix seconds
);

-- Groups: each user's private group, plus any the admin adds.
CREATE TABLE IF NOT EXISTS groups (
    gid  INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);

-- Supplementary group membership, by login name (as struct group's gr_mem lists it).
CREATE TABLE IF NOT EXISTS members (
    gid       INTEGER NOT NULL REFERENCES groups(gid) ON DELETE CASCADE,
    user_name TEXT NOT NULL,
    PRIMARY KEY (gid, user_name)
);

-- Every UID ever given to a public key. A UID is never given to another key, even after the
-- user is removed, so files a former user left behind never change owner.
CREATE TABLE IF NOT EXISTS uid_allocations (
    uid    INTEGER PRIMARY KEY,
    pubkey TEXT NOT NULL UNIQUE
);

-- Every GID ever given to a supplementary group name (writer only: the NSS module does not
-- read this table, so adding it needed no version bump). Supplementary GIDs come from the
-- same range as UIDs and never equal an allocated UID, so they never equal a private
-- group's gid. A GID is never given to another name, even after the group is removed.
CREATE TABLE IF NOT EXISTS gid_allocations (
    gid  INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);

INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', '1');
