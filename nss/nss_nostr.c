/*
 * nss_nostr.c: libnss_nostr.so.2, the glibc NSS module of nostr-homed.
 *
 * It answers passwd and group lookups (by name, by id, enumeration, initgroups) from the
 * nostr-homed user cache, a SQLite database written only by nostr-homectl. The schema is
 * internal/userdb/schema.sql (schema version 1); this module reads users, groups, members
 * and meta('schema_version') and nothing else. It never writes and never talks to the
 * network or to the daemon (dbus-daemon itself resolves users through NSS; calling back
 * into a daemon on that bus could deadlock).
 *
 * Why C and not Go: an NSS module is loaded into every process that resolves a user (sshd,
 * su, ls -l, dbus-daemon). A Go c-shared library costs 2.4 to 19 ms to load and its runtime
 * hangs after fork without exec (measured on this project's machines); this C module costs
 * about 1 ms to load and has no threads of its own.
 *
 * Database: NOSTR_HOMED_USERDB_DEFAULT (/var/lib/nostr-homed/users.db), or the environment
 * variable NOSTR_HOMED_USERDB when the process is not setuid/setgid (secure_getenv).
 *
 * Design:
 *  - One shared read-only connection per process (SQLITE_OPEN_READONLY|SQLITE_OPEN_NOMUTEX,
 *    busy timeout 100 ms), guarded by one pthread mutex, with prepared statements cached.
 *  - Every call stat()s the path and reopens when st_dev/st_ino changed (the file was
 *    replaced by rename), and checks meta.schema_version == '1' (else NSS_STATUS_UNAVAIL and
 *    one syslog warning per process).
 *  - Fork: a pthread_atfork handler takes the mutex around fork(), so the child never
 *    inherits it locked; the child (detected by the atfork child handler or by a changed
 *    getpid()) closes the inherited connection and opens its own before its first lookup.
 *  - The schema puts the database in WAL mode. A read-only connection to a WAL database
 *    needs the -wal and -shm files to exist or to be creatable; when no writer has the
 *    database open and the caller cannot create them (any non-root process), SQLite fails
 *    with SQLITE_READONLY_CANTINIT. Then this module falls back to a connection opened for
 *    this one call with the URI parameter immutable=1 (no -wal exists, so the main file
 *    holds every committed transaction) and closes it at the end of the call.
 *  - Entries that would be unsafe are never served: uid or gid 0 or (uid_t)-1, names that
 *    are empty or contain ':', ',' or a newline, other fields that contain ':' or a newline.
 *  - Small buffers: NSS_STATUS_TRYAGAIN with *errnop = ERANGE, as glibc expects.
 *  - Database absent: NSS_STATUS_UNAVAIL with *errnop = ENOENT, so "files" still answers.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <grp.h>
#include <nss.h>
#include <pthread.h>
#include <pwd.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <syslog.h>
#include <unistd.h>

#ifndef NOSTR_HOMED_USERDB_DEFAULT
#define NOSTR_HOMED_USERDB_DEFAULT "/var/lib/nostr-homed/users.db"
#endif

#define EXPORT __attribute__((visibility("default")))
#define SCHEMA_VERSION "1"
#define BUSY_TIMEOUT_MS 100
#define MAX_NAME_LEN 256

enum stmt_id {
	ST_VERSION,
	ST_PW_NAM,
	ST_PW_UID,
	ST_PW_NEXT,
	ST_GR_NAM,
	ST_GR_GID,
	ST_GR_NEXT,
	ST_GR_MEM,
	ST_INITGR,
	ST__COUNT
};

#define PW_COLS "name, uid, gid, gecos, home, shell"
static const char *const stmt_sql[ST__COUNT] = {
	[ST_VERSION] = "SELECT value FROM meta WHERE key = 'schema_version'",
	[ST_PW_NAM] = "SELECT " PW_COLS " FROM users WHERE name = ?1",
	[ST_PW_UID] = "SELECT " PW_COLS " FROM users WHERE uid = ?1",
	[ST_PW_NEXT] = "SELECT " PW_COLS " FROM users WHERE uid > ?1 ORDER BY uid LIMIT 1",
	[ST_GR_NAM] = "SELECT name, gid FROM groups WHERE name = ?1",
	[ST_GR_GID] = "SELECT name, gid FROM groups WHERE gid = ?1",
	[ST_GR_NEXT] = "SELECT name, gid FROM groups WHERE gid > ?1 ORDER BY gid LIMIT 1",
	[ST_GR_MEM] = "SELECT user_name FROM members WHERE gid = ?1 ORDER BY user_name",
	[ST_INITGR] = "SELECT m.gid FROM members AS m JOIN groups AS g ON g.gid = m.gid"
		      " WHERE m.user_name = ?1 ORDER BY m.gid",
};

/* Warnings logged at most once per process. */
enum warn_id { W_SCHEMA, W_OPEN, W_QUERY, W_ROW, W_IMMUTABLE, W__COUNT };

static struct {
	pthread_mutex_t lock;
	sqlite3 *db;
	sqlite3_stmt *st[ST__COUNT];
	char *path;	  /* path the connection was opened for */
	dev_t dev;	  /* identity of the file the connection was opened on */
	ino_t ino;
	pid_t pid;	  /* process that opened the connection */
	bool forked;	  /* set by the atfork child handler */
	bool transient;	  /* immutable fallback connection: close at release */
	bool warned[W__COUNT];
	int64_t pw_cursor; /* enumeration: last uid returned */
	int64_t gr_cursor; /* enumeration: last gid returned */
} g = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
};

static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void atfork_prepare(void)
{
	pthread_mutex_lock(&g.lock);
}

static void atfork_parent(void)
{
	pthread_mutex_unlock(&g.lock);
}

static void atfork_child(void)
{
	/* The forking thread held the lock (prepare), so no other thread was inside SQLite
	 * through this module. Give the child a fresh mutex and make it drop the inherited
	 * connection on its next lookup. */
	pthread_mutex_init(&g.lock, NULL);
	g.forked = true;
}

static void register_atfork(void)
{
	pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

static void warn_once(enum warn_id id, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void warn_once(enum warn_id id, const char *fmt, ...)
{
	if (g.warned[id])
		return;
	g.warned[id] = true;
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	syslog(LOG_AUTHPRIV | LOG_WARNING, "nss_nostr: %s", msg);
}

static void lock(void)
{
	pthread_once(&atfork_once, register_atfork);
	pthread_mutex_lock(&g.lock);
}

static void unlock(void)
{
	pthread_mutex_unlock(&g.lock);
}

static void conn_close(void)
{
	for (int i = 0; i < ST__COUNT; i++) {
		sqlite3_finalize(g.st[i]);
		g.st[i] = NULL;
	}
	if (g.db)
		sqlite3_close_v2(g.db);
	g.db = NULL;
	g.transient = false;
}

static void db_close(void)
{
	conn_close();
	free(g.path);
	g.path = NULL;
}

static const char *db_path(void)
{
	const char *p = secure_getenv("NOSTR_HOMED_USERDB");
	return (p && *p) ? p : NOSTR_HOMED_USERDB_DEFAULT;
}

static enum nss_status sqlite_status(int rc, int *errnop)
{
	int primary = rc & 0xff;
	if (primary == SQLITE_BUSY || primary == SQLITE_LOCKED) {
		*errnop = EAGAIN;
		return NSS_STATUS_TRYAGAIN;
	}
	if (primary == SQLITE_NOMEM) {
		*errnop = ENOMEM;
		return NSS_STATUS_TRYAGAIN;
	}
	*errnop = EIO;
	return NSS_STATUS_UNAVAIL;
}

/* Builds "file:<path>?immutable=1" with the path percent-encoded where URIs need it. */
static char *immutable_uri(const char *path)
{
	static const char prefix[] = "file:", suffix[] = "?immutable=1";
	size_t n = strlen(path);
	char *uri = malloc(sizeof(prefix) + 3 * n + sizeof(suffix));
	if (!uri)
		return NULL;
	char *o = stpcpy(uri, prefix);
	for (const char *p = path; *p; p++) {
		unsigned char c = (unsigned char)*p;
		if (c == '%' || c == '?' || c == '#' || c < 0x20 || c >= 0x7f) {
			static const char hex[] = "0123456789ABCDEF";
			*o++ = '%';
			*o++ = hex[c >> 4];
			*o++ = hex[c & 15];
		} else {
			*o++ = (char)c;
		}
	}
	strcpy(o, suffix);
	return uri;
}

static int db_open(const char *path, bool immutable)
{
	int flags = SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX;
	char *uri = NULL;
	if (immutable) {
		uri = immutable_uri(path);
		if (!uri)
			return SQLITE_NOMEM;
		flags |= SQLITE_OPEN_URI;
	}
	sqlite3 *db = NULL;
	int rc = sqlite3_open_v2(immutable ? uri : path, &db, flags, NULL);
	free(uri);
	if (rc != SQLITE_OK) {
		if (db)
			sqlite3_close_v2(db);
		return rc;
	}
	sqlite3_extended_result_codes(db, 1);
	sqlite3_busy_timeout(db, BUSY_TIMEOUT_MS);
	/* A reader never checkpoints, not even when it is the last connection to close. */
	sqlite3_db_config(db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, (int *)NULL);
	g.db = db;
	g.transient = immutable;
	return SQLITE_OK;
}

static int stmt_get(enum stmt_id id, sqlite3_stmt **out)
{
	if (!g.st[id]) {
		int rc = sqlite3_prepare_v3(g.db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT,
					    &g.st[id], NULL);
		if (rc != SQLITE_OK) {
			g.st[id] = NULL;
			return rc;
		}
	}
	*out = g.st[id];
	return SQLITE_OK;
}

static void stmt_done(sqlite3_stmt *s)
{
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
}

/* Reads meta.schema_version: SQLITE_OK and *ok set, or an SQLite error code. */
static int check_schema(bool *ok)
{
	sqlite3_stmt *s;
	int rc = stmt_get(ST_VERSION, &s);
	if (rc != SQLITE_OK)
		return rc;
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		const unsigned char *v = sqlite3_column_text(s, 0);
		*ok = v && strcmp((const char *)v, SCHEMA_VERSION) == 0;
		if (!*ok)
			warn_once(W_SCHEMA, "%s has schema_version '%s', this module reads '%s' only",
				  g.path ? g.path : "?", v ? (const char *)v : "", SCHEMA_VERSION);
		rc = SQLITE_OK;
	} else if (rc == SQLITE_DONE) {
		*ok = false;
		warn_once(W_SCHEMA, "%s has no schema_version, this module reads '%s' only",
			  g.path ? g.path : "?", SCHEMA_VERSION);
		rc = SQLITE_OK;
	}
	stmt_done(s);
	return rc;
}

static bool cantinit(int rc)
{
	int primary = rc & 0xff;
	return primary == SQLITE_READONLY || primary == SQLITE_CANTOPEN;
}

/* Ends a call's use of the connection: a fallback (immutable) connection is not kept. */
static void db_release(void)
{
	if (g.transient)
		conn_close();
}

/*
 * Makes g.db a usable connection to the current database file. Called with the lock held.
 * Returns NSS_STATUS_SUCCESS, or the status to return (with *errnop set).
 */
static enum nss_status db_acquire(int *errnop)
{
	if (g.forked || (g.db && g.pid != getpid())) {
		/* Inherited from the parent: drop it. NO_CKPT_ON_CLOSE and read-only mode make
		 * closing touch nothing but this process's own descriptors and maps. */
		db_close();
		g.forked = false;
	}

	const char *path = db_path();
	struct stat st;
	if (stat(path, &st) != 0) {
		*errnop = errno;
		db_close();
		return NSS_STATUS_UNAVAIL;
	}
	if (g.db && (st.st_dev != g.dev || st.st_ino != g.ino || strcmp(g.path, path) != 0))
		db_close();

	if (!g.db) {
		g.path = strdup(path);
		if (!g.path) {
			*errnop = ENOMEM;
			return NSS_STATUS_TRYAGAIN;
		}
		int rc = db_open(path, false);
		if (rc != SQLITE_OK) {
			warn_once(W_OPEN, "cannot open %s: %s", path, sqlite3_errstr(rc));
			db_close();
			return sqlite_status(rc, errnop);
		}
		g.dev = st.st_dev;
		g.ino = st.st_ino;
		g.pid = getpid();
	}

	bool ok = false;
	int rc = check_schema(&ok);
	if (rc != SQLITE_OK && cantinit(rc) && !g.transient) {
		/* No -wal/-shm and we may not create them: read the main file as immutable for
		 * this call only (see the header comment). */
		warn_once(W_IMMUTABLE, "%s: %s; reading it with immutable=1 per call", path,
			  sqlite3_errstr(rc));
		conn_close();
		rc = db_open(path, true);
		if (rc == SQLITE_OK) {
			g.dev = st.st_dev;
			g.ino = st.st_ino;
			g.pid = getpid();
			rc = check_schema(&ok);
		}
	}
	if (rc != SQLITE_OK) {
		warn_once(W_QUERY, "reading %s: %s", path, sqlite3_errstr(rc));
		enum nss_status s = sqlite_status(rc, errnop);
		db_close();
		return s;
	}
	if (!ok) {
		*errnop = EINVAL;
		db_release();
		return NSS_STATUS_UNAVAIL;
	}
	return NSS_STATUS_SUCCESS;
}

/* ---- validation ------------------------------------------------------------------- */

static bool valid_name(const char *s)
{
	if (!s || !*s || strlen(s) > MAX_NAME_LEN)
		return false;
	return strpbrk(s, ":,\n") == NULL;
}

static bool valid_field(const char *s)
{
	return s && strpbrk(s, ":\n") == NULL;
}

static bool valid_id(int64_t id)
{
	return id > 0 && id < (int64_t)UINT32_MAX;
}

static const char *col_text(sqlite3_stmt *s, int i)
{
	const unsigned char *t = sqlite3_column_text(s, i);
	return t ? (const char *)t : "";
}

/* ---- buffer packing --------------------------------------------------------------- */

struct packer {
	char *buf;
	size_t len;
	size_t off;
};

static char *pack_str(struct packer *p, const char *s)
{
	size_t n = strlen(s) + 1;
	if (p->len - p->off < n)
		return NULL;
	char *d = p->buf + p->off;
	memcpy(d, s, n);
	p->off += n;
	return d;
}

static void *pack_array(struct packer *p, size_t size, size_t align)
{
	uintptr_t base = (uintptr_t)(p->buf + p->off);
	size_t pad = (align - base % align) % align;
	if (p->len - p->off < pad || p->len - p->off - pad < size)
		return NULL;
	p->off += pad;
	void *d = p->buf + p->off;
	p->off += size;
	return d;
}

/* ---- passwd ----------------------------------------------------------------------- */

enum fill { FILL_OK, FILL_ERANGE, FILL_INVALID };

static enum fill fill_passwd(sqlite3_stmt *s, struct passwd *pw, char *buf, size_t buflen)
{
	const char *name = col_text(s, 0), *gecos = col_text(s, 3);
	const char *home = col_text(s, 4), *shell = col_text(s, 5);
	int64_t uid = sqlite3_column_int64(s, 1), gid = sqlite3_column_int64(s, 2);
	if (sqlite3_column_type(s, 1) != SQLITE_INTEGER || sqlite3_column_type(s, 2) != SQLITE_INTEGER ||
	    !valid_id(uid) || !valid_id(gid) || !valid_name(name) || !valid_field(gecos) ||
	    !valid_field(home) || !valid_field(shell)) {
		warn_once(W_ROW, "ignoring invalid users row for uid %lld", (long long)uid);
		return FILL_INVALID;
	}
	struct packer p = {buf, buflen, 0};
	if (!(pw->pw_name = pack_str(&p, name)) || !(pw->pw_passwd = pack_str(&p, "x")) ||
	    !(pw->pw_gecos = pack_str(&p, gecos)) || !(pw->pw_dir = pack_str(&p, home)) ||
	    !(pw->pw_shell = pack_str(&p, shell)))
		return FILL_ERANGE;
	pw->pw_uid = (uid_t)uid;
	pw->pw_gid = (gid_t)gid;
	return FILL_OK;
}

/* Runs a one-row passwd query with the lock held and the database acquired. */
static enum nss_status pw_query(enum stmt_id id, const char *name, int64_t key, struct passwd *pw,
				char *buf, size_t buflen, int *errnop, int64_t *row_uid)
{
	sqlite3_stmt *s;
	int rc = stmt_get(id, &s);
	if (rc != SQLITE_OK)
		return sqlite_status(rc, errnop);
	if (name)
		rc = sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	else
		rc = sqlite3_bind_int64(s, 1, key);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(s);
	enum nss_status st;
	if (rc == SQLITE_ROW) {
		if (row_uid)
			*row_uid = sqlite3_column_int64(s, 1);
		switch (fill_passwd(s, pw, buf, buflen)) {
		case FILL_OK:
			st = NSS_STATUS_SUCCESS;
			break;
		case FILL_ERANGE:
			*errnop = ERANGE;
			st = NSS_STATUS_TRYAGAIN;
			break;
		default:
			*errnop = ENOENT;
			st = NSS_STATUS_NOTFOUND;
		}
	} else if (rc == SQLITE_DONE) {
		*errnop = ENOENT;
		st = NSS_STATUS_NOTFOUND;
	} else {
		warn_once(W_QUERY, "query failed: %s", sqlite3_errstr(rc));
		st = sqlite_status(rc, errnop);
	}
	stmt_done(s);
	return st;
}

static enum nss_status pw_lookup(enum stmt_id id, const char *name, int64_t key, struct passwd *pw,
				 char *buf, size_t buflen, int *errnop)
{
	lock();
	enum nss_status st = db_acquire(errnop);
	if (st == NSS_STATUS_SUCCESS) {
		st = pw_query(id, name, key, pw, buf, buflen, errnop, NULL);
		db_release();
	}
	unlock();
	return st;
}

EXPORT enum nss_status _nss_nostr_getpwnam_r(const char *name, struct passwd *pw, char *buf,
					     size_t buflen, int *errnop)
{
	if (!valid_name(name)) {
		*errnop = ENOENT;
		return NSS_STATUS_NOTFOUND;
	}
	return pw_lookup(ST_PW_NAM, name, 0, pw, buf, buflen, errnop);
}

EXPORT enum nss_status _nss_nostr_getpwuid_r(uid_t uid, struct passwd *pw, char *buf,
					     size_t buflen, int *errnop)
{
	if (!valid_id(uid)) {
		*errnop = ENOENT;
		return NSS_STATUS_NOTFOUND;
	}
	return pw_lookup(ST_PW_UID, NULL, uid, pw, buf, buflen, errnop);
}

EXPORT enum nss_status _nss_nostr_setpwent(int stayopen)
{
	(void)stayopen;
	lock();
	g.pw_cursor = 0;
	unlock();
	return NSS_STATUS_SUCCESS;
}

EXPORT enum nss_status _nss_nostr_endpwent(void)
{
	lock();
	g.pw_cursor = 0;
	unlock();
	return NSS_STATUS_SUCCESS;
}

EXPORT enum nss_status _nss_nostr_getpwent_r(struct passwd *pw, char *buf, size_t buflen,
					     int *errnop)
{
	lock();
	enum nss_status st = db_acquire(errnop);
	if (st == NSS_STATUS_SUCCESS) {
		/* The cursor is the last uid returned, so enumeration survives a reopen and an
		 * ERANGE retry returns the same entry. Invalid rows are stepped over. */
		for (;;) {
			int64_t row_uid = -1;
			st = pw_query(ST_PW_NEXT, NULL, g.pw_cursor, pw, buf, buflen, errnop, &row_uid);
			if (st == NSS_STATUS_SUCCESS) {
				g.pw_cursor = pw->pw_uid;
				break;
			}
			/* An invalid row: step over it. */
			if (st == NSS_STATUS_NOTFOUND && row_uid > g.pw_cursor) {
				g.pw_cursor = row_uid;
				continue;
			}
			break;
		}
		db_release();
	}
	unlock();
	return st;
}

/* ---- group ------------------------------------------------------------------------ */

/* Fills gr from the current row of s (name, gid) and the members of that gid. */
static enum fill fill_group(sqlite3_stmt *s, struct group *gr, char *buf, size_t buflen,
			    int *sqlite_rc)
{
	const char *name = col_text(s, 0);
	int64_t gid = sqlite3_column_int64(s, 1);
	if (sqlite3_column_type(s, 1) != SQLITE_INTEGER || !valid_id(gid) || !valid_name(name)) {
		warn_once(W_ROW, "ignoring invalid groups row for gid %lld", (long long)gid);
		return FILL_INVALID;
	}
	struct packer p = {buf, buflen, 0};
	if (!(gr->gr_name = pack_str(&p, name)) || !(gr->gr_passwd = pack_str(&p, "x")))
		return FILL_ERANGE;
	gr->gr_gid = (gid_t)gid;

	/* Member names are packed one after another, then the pointer array after them. */
	sqlite3_stmt *m;
	int rc = stmt_get(ST_GR_MEM, &m);
	if (rc != SQLITE_OK) {
		*sqlite_rc = rc;
		return FILL_INVALID;
	}
	sqlite3_bind_int64(m, 1, gid);
	size_t first = p.off, count = 0;
	enum fill f = FILL_OK;
	while ((rc = sqlite3_step(m)) == SQLITE_ROW) {
		const char *member = col_text(m, 0);
		if (!valid_name(member))
			continue;
		if (!pack_str(&p, member)) {
			f = FILL_ERANGE;
			break;
		}
		count++;
	}
	stmt_done(m);
	if (f != FILL_OK)
		return f;
	if (rc != SQLITE_DONE) {
		*sqlite_rc = rc;
		return FILL_INVALID;
	}
	char **mem = pack_array(&p, (count + 1) * sizeof(char *), _Alignof(char *));
	if (!mem)
		return FILL_ERANGE;
	size_t off = first;
	for (size_t i = 0; i < count; i++) {
		mem[i] = buf + off;
		off += strlen(buf + off) + 1;
	}
	mem[count] = NULL;
	gr->gr_mem = mem;
	return FILL_OK;
}

static enum nss_status gr_query(enum stmt_id id, const char *name, int64_t key, struct group *gr,
				char *buf, size_t buflen, int *errnop, int64_t *row_gid)
{
	sqlite3_stmt *s;
	int rc = stmt_get(id, &s);
	if (rc != SQLITE_OK)
		return sqlite_status(rc, errnop);
	if (name)
		rc = sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	else
		rc = sqlite3_bind_int64(s, 1, key);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(s);
	enum nss_status st;
	if (rc == SQLITE_ROW) {
		int qrc = SQLITE_OK;
		if (row_gid)
			*row_gid = sqlite3_column_int64(s, 1);
		switch (fill_group(s, gr, buf, buflen, &qrc)) {
		case FILL_OK:
			st = NSS_STATUS_SUCCESS;
			break;
		case FILL_ERANGE:
			*errnop = ERANGE;
			st = NSS_STATUS_TRYAGAIN;
			break;
		default:
			if (qrc != SQLITE_OK) {
				warn_once(W_QUERY, "query failed: %s", sqlite3_errstr(qrc));
				st = sqlite_status(qrc, errnop);
			} else {
				*errnop = ENOENT;
				st = NSS_STATUS_NOTFOUND;
			}
		}
	} else if (rc == SQLITE_DONE) {
		*errnop = ENOENT;
		st = NSS_STATUS_NOTFOUND;
	} else {
		warn_once(W_QUERY, "query failed: %s", sqlite3_errstr(rc));
		st = sqlite_status(rc, errnop);
	}
	stmt_done(s);
	return st;
}

static enum nss_status gr_lookup(enum stmt_id id, const char *name, int64_t key, struct group *gr,
				 char *buf, size_t buflen, int *errnop)
{
	lock();
	enum nss_status st = db_acquire(errnop);
	if (st == NSS_STATUS_SUCCESS) {
		st = gr_query(id, name, key, gr, buf, buflen, errnop, NULL);
		db_release();
	}
	unlock();
	return st;
}

EXPORT enum nss_status _nss_nostr_getgrnam_r(const char *name, struct group *gr, char *buf,
					     size_t buflen, int *errnop)
{
	if (!valid_name(name)) {
		*errnop = ENOENT;
		return NSS_STATUS_NOTFOUND;
	}
	return gr_lookup(ST_GR_NAM, name, 0, gr, buf, buflen, errnop);
}

EXPORT enum nss_status _nss_nostr_getgrgid_r(gid_t gid, struct group *gr, char *buf,
					     size_t buflen, int *errnop)
{
	if (!valid_id(gid)) {
		*errnop = ENOENT;
		return NSS_STATUS_NOTFOUND;
	}
	return gr_lookup(ST_GR_GID, NULL, gid, gr, buf, buflen, errnop);
}

EXPORT enum nss_status _nss_nostr_setgrent(int stayopen)
{
	(void)stayopen;
	lock();
	g.gr_cursor = 0;
	unlock();
	return NSS_STATUS_SUCCESS;
}

EXPORT enum nss_status _nss_nostr_endgrent(void)
{
	lock();
	g.gr_cursor = 0;
	unlock();
	return NSS_STATUS_SUCCESS;
}

EXPORT enum nss_status _nss_nostr_getgrent_r(struct group *gr, char *buf, size_t buflen,
					     int *errnop)
{
	lock();
	enum nss_status st = db_acquire(errnop);
	if (st == NSS_STATUS_SUCCESS) {
		for (;;) {
			int64_t row_gid = -1;
			st = gr_query(ST_GR_NEXT, NULL, g.gr_cursor, gr, buf, buflen, errnop, &row_gid);
			if (st == NSS_STATUS_SUCCESS) {
				g.gr_cursor = gr->gr_gid;
				break;
			}
			/* An invalid row: step over it. */
			if (st == NSS_STATUS_NOTFOUND && row_gid > g.gr_cursor) {
				g.gr_cursor = row_gid;
				continue;
			}
			break;
		}
		db_release();
	}
	unlock();
	return st;
}

EXPORT enum nss_status _nss_nostr_initgroups_dyn(const char *user, gid_t group, long int *start,
						 long int *size, gid_t **groupsp, long int limit,
						 int *errnop)
{
	if (!valid_name(user)) {
		*errnop = ENOENT;
		return NSS_STATUS_NOTFOUND;
	}
	lock();
	enum nss_status st = db_acquire(errnop);
	if (st != NSS_STATUS_SUCCESS) {
		unlock();
		return st;
	}
	sqlite3_stmt *s;
	int rc = stmt_get(ST_INITGR, &s);
	if (rc != SQLITE_OK) {
		st = sqlite_status(rc, errnop);
		db_release();
		unlock();
		return st;
	}
	sqlite3_bind_text(s, 1, user, -1, SQLITE_STATIC);
	bool any = false;
	st = NSS_STATUS_SUCCESS;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		int64_t gid64 = sqlite3_column_int64(s, 0);
		if (!valid_id(gid64) || (gid_t)gid64 == group)
			continue;
		gid_t gid = (gid_t)gid64;
		gid_t *groups = *groupsp;
		bool dup = false;
		for (long int i = 0; i < *start; i++)
			if (groups[i] == gid) {
				dup = true;
				break;
			}
		if (dup)
			continue;
		if (*start == *size) {
			if (limit > 0 && *size >= limit)
				break; /* the caller's maximum: glibc reports the truncation */
			long int newsize = *size > 0 ? 2 * *size : 8;
			if (limit > 0 && newsize > limit)
				newsize = limit;
			gid_t *grown = realloc(groups, (size_t)newsize * sizeof(*groups));
			if (!grown) {
				*errnop = ENOMEM;
				st = NSS_STATUS_TRYAGAIN;
				break;
			}
			*groupsp = groups = grown;
			*size = newsize;
		}
		groups[(*start)++] = gid;
		any = true;
	}
	if (st == NSS_STATUS_SUCCESS && rc != SQLITE_ROW && rc != SQLITE_DONE) {
		warn_once(W_QUERY, "query failed: %s", sqlite3_errstr(rc));
		st = sqlite_status(rc, errnop);
	}
	stmt_done(s);
	db_release();
	unlock();
	if (st == NSS_STATUS_SUCCESS && !any) {
		*errnop = ENOENT;
		return NSS_STATUS_NOTFOUND;
	}
	return st;
}
