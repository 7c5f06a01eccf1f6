/*
 * pam_nostr.c: pam_nostr.so, the PAM module of nostr-homed.
 *
 * A thin client of the nostr-homectl daemon, org.nostr.Homed1 on the SYSTEM bus
 * (dbus/org.nostr.Homed1.xml). The module holds no keys and checks no signatures itself:
 *   auth     BeginLogin(user, PAM_SERVICE, PAM_RHOST or ""), then by method:
 *              "password":      ask for the daemon's prompt (echo off) through the PAM
 *                               conversation, then CompleteLogin(login_id, password);
 *              "remote-signer": show message (and uri) as PAM_TEXT_INFO, then
 *                               CompleteLogin(login_id, "") waiting up to timeout= seconds.
 *                               A nostrconnect:// uri is also shown as a QR code (below).
 *            Any other method: PAM_AUTHINFO_UNAVAIL. On conversation failure or when the
 *            wait runs out: CancelLogin(login_id).
 *   setcred  PAM_SUCCESS (nothing to set).
 *   account  CheckAccount(user).
 *   session  OpenSession(user) / CloseSession(user), waiting up to session_timeout= seconds.
 *
 * Why C and not Go: a Go c-shared PAM module hung inside sshd after fork (10 of 60 logins,
 * threads stuck in runtime.futexsleep); a C module passed 40 of 40 (measured on this project's machines).
 * The module is also kept stateless across calls: each call opens its own bus connection
 * (sd_bus_open_system, which honours DBUS_SYSTEM_BUS_ADDRESS for non-setuid callers) and
 * flushes, closes and frees it before returning, so nothing survives a fork.
 *
 * Module arguments:
 *   debug               log each D-Bus call and its outcome (LOG_DEBUG, LOG_AUTHPRIV).
 *   timeout=N           seconds to wait for a remote signer's answer (CompleteLogin of the
 *                       "remote-signer" method). Default 120.
 *   session_timeout=N   seconds to wait for OpenSession and CloseSession (the first open
 *                       mounts the home, the last close flushes it). Default 30.
 *   use_first_pass      use the password already in PAM_AUTHTOK (set by an earlier module);
 *                       never prompt. Fails with PAM_AUTH_ERR if there is none.
 *   try_first_pass      use PAM_AUTHTOK if set; if it is missing or the daemon refuses it
 *                       (AuthFailed), start a new login and prompt.
 *   noqr                show a nostrconnect:// uri as text only, without the QR code.
 *   Unknown arguments are logged as a warning and ignored. N is 1..86400.
 *   Other calls (BeginLogin, CompleteLogin with a password, CheckAccount) use sd-bus's
 *   default method-call timeout (25 s).
 *
 * QR code: a phone signer app scans a nostrconnect:// uri more easily than anyone types it,
 * so the module draws it (libqrencode) with Unicode half blocks, two module rows per text row,
 * in one PAM_TEXT_INFO message between the message and the uri text. ECC level M, or L when
 * M would be wider than 80 columns; quiet zone 2 modules. If even L does not fit 80 columns
 * (about 450 bytes) or encoding fails, only the text is shown, with a line saying why.
 *
 * Error mapping: D-Bus error name -> PAM code, per PAM function. Every failure is logged to
 * syslog (LOG_AUTHPRIV) with the D-Bus error name and message.
 *
 *   D-Bus error                                    auth               account            session
 *   ---------------------------------------------  -----------------  -----------------  -----------------
 *   cannot connect to the bus (sd_bus_open_system) AUTHINFO_UNAVAIL   AUTHINFO_UNAVAIL   AUTHINFO_UNAVAIL
 *   org.freedesktop.DBus.Error.ServiceUnknown      AUTHINFO_UNAVAIL   AUTHINFO_UNAVAIL   AUTHINFO_UNAVAIL
 *   org.freedesktop.DBus.Error.Spawn.* (the bus    AUTHINFO_UNAVAIL   AUTHINFO_UNAVAIL   AUTHINFO_UNAVAIL
 *     could not activate the daemon: no service
 *     file, ExecFailed, ChildExited, ...)
 *   org.freedesktop.DBus.Error.NameHasNoOwner      AUTHINFO_UNAVAIL   AUTHINFO_UNAVAIL   AUTHINFO_UNAVAIL
 *   org.freedesktop.DBus.Error.NoReply            *AUTHINFO_UNAVAIL   AUTHINFO_UNAVAIL   AUTHINFO_UNAVAIL
 *   org.freedesktop.DBus.Error.Timeout, .TimedOut *AUTHINFO_UNAVAIL   AUTHINFO_UNAVAIL   AUTHINFO_UNAVAIL
 *   org.freedesktop.DBus.Error.Disconnected        AUTHINFO_UNAVAIL   AUTHINFO_UNAVAIL   AUTHINFO_UNAVAIL
 *   org.freedesktop.DBus.Error.AccessDenied (bus   AUTHINFO_UNAVAIL   AUTHINFO_UNAVAIL   AUTHINFO_UNAVAIL
 *     policy: the caller is not root)
 *   org.nostr.Homed1.Error.UnknownUser             USER_UNKNOWN       USER_UNKNOWN       USER_UNKNOWN
 *   org.nostr.Homed1.Error.AuthFailed              AUTH_ERR           AUTH_ERR           SESSION_ERR
 *   org.nostr.Homed1.Error.ProofExpired            AUTH_ERR           AUTH_ERR           SESSION_ERR
 *   org.nostr.Homed1.Error.ProofReplayed           AUTH_ERR           AUTH_ERR           SESSION_ERR
 *   org.nostr.Homed1.Error.Timeout                 AUTH_ERR           SYSTEM_ERR         SESSION_ERR
 *   org.nostr.Homed1.Error.Unavailable             AUTHINFO_UNAVAIL   AUTHINFO_UNAVAIL   AUTHINFO_UNAVAIL
 *   org.nostr.Homed1.Error.NotAllowed              PERM_DENIED        PERM_DENIED        PERM_DENIED
 *   org.nostr.Homed1.Error.AccessDenied            PERM_DENIED        PERM_DENIED        PERM_DENIED
 *   org.nostr.Homed1.Error.MountFailed, InvalidArgs,
 *     and anything else                            SYSTEM_ERR         SYSTEM_ERR         SESSION_ERR
 *
 *   * Exception: when CompleteLogin of a "remote-signer" login is not answered within
 *     timeout= (NoReply or Timeout), the remote signer did not approve in time: PAM_AUTH_ERR,
 *     and the module sends CancelLogin.
 *   A user name that is not valid UTF-8 (it cannot be sent, so cannot be enrolled) is
 *   USER_UNKNOWN; such a password is AUTH_ERR.
 *   A conversation failure is PAM_CONV_ERR (after CancelLogin). AUTHINFO_UNAVAIL and
 *   USER_UNKNOWN are kept distinct in account and session too, so that a stack can say
 *   [authinfo_unavail=ignore user_unknown=ignore] for users this daemon does not manage.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <qrencode.h>
#include <stdarg.h>
#include <security/pam_ext.h>
#include <security/pam_modules.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <systemd/sd-bus.h>

#define PUBLIC __attribute__((visibility("default")))

#define HOMED_NAME "org.nostr.Homed1"
#define HOMED_PATH "/org/nostr/Homed1"
#define HOMED_IFACE "org.nostr.Homed1"
#define HOMED_ERROR "org.nostr.Homed1.Error."

#define USEC_PER_SEC UINT64_C(1000000)
#define DEFAULT_TIMEOUT_SEC 120
#define DEFAULT_SESSION_TIMEOUT_SEC 30
#define MAX_TIMEOUT_SEC 86400
#define DEFAULT_PROMPT "Password: "

enum ctx { CTX_AUTH, CTX_ACCOUNT, CTX_SESSION };

struct opts {
	bool debug;
	bool use_first_pass;
	bool try_first_pass;
	bool noqr;
	unsigned timeout_sec;
	unsigned session_timeout_sec;
};

static bool parse_seconds(const char *s, unsigned *out)
{
	if (!*s || *s == '-' || *s == '+')
		return false;
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (errno || *end || v < 1 || v > MAX_TIMEOUT_SEC)
		return false;
	*out = (unsigned)v;
	return true;
}

static void parse_opts(pam_handle_t *pamh, int argc, const char **argv, struct opts *o)
{
	*o = (struct opts){
		.timeout_sec = DEFAULT_TIMEOUT_SEC,
		.session_timeout_sec = DEFAULT_SESSION_TIMEOUT_SEC,
	};
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "debug") == 0) {
			o->debug = true;
		} else if (strcmp(a, "use_first_pass") == 0) {
			o->use_first_pass = true;
		} else if (strcmp(a, "try_first_pass") == 0) {
			o->try_first_pass = true;
		} else if (strcmp(a, "noqr") == 0) {
			o->noqr = true;
		} else if (strncmp(a, "timeout=", 8) == 0) {
			if (!parse_seconds(a + 8, &o->timeout_sec))
				pam_syslog(pamh, LOG_WARNING,
					   "invalid argument \"%s\" (1..%d seconds), using timeout=%u", a,
					   MAX_TIMEOUT_SEC, o->timeout_sec);
		} else if (strncmp(a, "session_timeout=", 16) == 0) {
			if (!parse_seconds(a + 16, &o->session_timeout_sec))
				pam_syslog(pamh, LOG_WARNING,
					   "invalid argument \"%s\" (1..%d seconds), using session_timeout=%u",
					   a, MAX_TIMEOUT_SEC, o->session_timeout_sec);
		} else {
			pam_syslog(pamh, LOG_WARNING, "unknown argument \"%s\" ignored", a);
		}
	}
	if (o->use_first_pass && o->try_first_pass)
		o->try_first_pass = false; /* use_first_pass is the stricter one */
}

/* ---- error mapping ---------------------------------------------------------------- */

static bool name_is(const sd_bus_error *e, const char *name)
{
	return e && e->name && strcmp(e->name, name) == 0;
}

static bool homed_error_is(const sd_bus_error *e, const char *suffix)
{
	size_t n = strlen(HOMED_ERROR);
	return e && e->name && strncmp(e->name, HOMED_ERROR, n) == 0 &&
	       strcmp(e->name + n, suffix) == 0;
}

/* Every org.freedesktop.DBus.Error.Spawn.* name: bus activation of the daemon failed
 * (ServiceNotFound, ExecFailed, ChildExited, ChildSignaled, ...). The daemon is as absent as
 * with ServiceUnknown, so the result must be the same, or a default=die stack would lock
 * everybody out whenever the daemon cannot start. */
static bool is_spawn_error(const sd_bus_error *e)
{
	static const char prefix[] = "org.freedesktop.DBus.Error.Spawn.";
	return e && e->name && strncmp(e->name, prefix, sizeof prefix - 1) == 0;
}

/* The bus or the daemon did not answer in time. */
static bool is_no_answer(const sd_bus_error *e)
{
	return name_is(e, SD_BUS_ERROR_NO_REPLY) || name_is(e, SD_BUS_ERROR_TIMEOUT) ||
	       name_is(e, "org.freedesktop.DBus.Error.TimedOut");
}

static int generic_error(enum ctx ctx)
{
	return ctx == CTX_SESSION ? PAM_SESSION_ERR : PAM_SYSTEM_ERR;
}

/* The table at the top of this file. */
static int map_error(enum ctx ctx, const sd_bus_error *e)
{
	if (name_is(e, SD_BUS_ERROR_SERVICE_UNKNOWN) || is_spawn_error(e) ||
	    name_is(e, SD_BUS_ERROR_NAME_HAS_NO_OWNER) || is_no_answer(e) ||
	    name_is(e, SD_BUS_ERROR_DISCONNECTED) || name_is(e, SD_BUS_ERROR_ACCESS_DENIED))
		return PAM_AUTHINFO_UNAVAIL;
	if (homed_error_is(e, "UnknownUser"))
		return PAM_USER_UNKNOWN;
	if (homed_error_is(e, "AuthFailed") || homed_error_is(e, "ProofExpired") ||
	    homed_error_is(e, "ProofReplayed"))
		return ctx == CTX_SESSION ? PAM_SESSION_ERR : PAM_AUTH_ERR;
	if (homed_error_is(e, "Timeout"))
		return ctx == CTX_AUTH ? PAM_AUTH_ERR : generic_error(ctx);
	if (homed_error_is(e, "Unavailable"))
		return PAM_AUTHINFO_UNAVAIL;
	if (homed_error_is(e, "NotAllowed") || homed_error_is(e, "AccessDenied"))
		return PAM_PERM_DENIED;
	return generic_error(ctx);
}

/* ---- bus calls -------------------------------------------------------------------- */

static int bus_open(pam_handle_t *pamh, const struct opts *o, sd_bus **bus)
{
	int r = sd_bus_open_system(bus);
	if (r < 0) {
		*bus = NULL;
		pam_syslog(pamh, LOG_ERR, "cannot connect to the system bus: %s", strerror(-r));
		return PAM_AUTHINFO_UNAVAIL;
	}
	if (o->debug)
		pam_syslog(pamh, LOG_DEBUG, "connected to the system bus");
	return PAM_SUCCESS;
}

#define CALL_BAD_ARGUMENT 1

/*
 * Calls method on the daemon with the arguments given by types/varargs, waiting up to
 * timeout_usec (0: sd-bus's default). Returns 0 and *reply (if reply is not NULL);
 * CALL_BAD_ARGUMENT if an argument cannot be sent (a string that is not valid UTF-8), with
 * err set; or a negative errno with err set (by the peer, the bus, or locally).
 */
static int homed_call(pam_handle_t *pamh, const struct opts *o, sd_bus *bus, const char *method,
		      uint64_t timeout_usec, bool sensitive, sd_bus_error *err,
		      sd_bus_message **reply, const char *types, ...)
{
	sd_bus_message *m = NULL;
	int r = sd_bus_message_new_method_call(bus, &m, HOMED_NAME, HOMED_PATH, HOMED_IFACE, method);
	if (r >= 0 && sensitive)
		r = sd_bus_message_sensitive(m); /* erase the secret from memory when freed */
	if (r >= 0) {
		va_list ap;
		va_start(ap, types);
		r = sd_bus_message_appendv(m, types, ap);
		va_end(ap);
	}
	if (r < 0) {
		sd_bus_error_set_errno(err, r);
		sd_bus_message_unref(m);
		return r == -EINVAL ? CALL_BAD_ARGUMENT : r;
	}
	if (o->debug)
		pam_syslog(pamh, LOG_DEBUG, "calling %s (timeout %llu s)", method,
			   (unsigned long long)(timeout_usec ? timeout_usec / USEC_PER_SEC : 25));
	r = sd_bus_call(bus, m, timeout_usec, err, reply);
	sd_bus_message_unref(m);
	if (r < 0 && !sd_bus_error_is_set(err))
		sd_bus_error_set_errno(err, r);
	if (o->debug)
		pam_syslog(pamh, LOG_DEBUG, "%s: %s", method, r < 0 ? err->name : "ok");
	return r < 0 ? r : 0;
}

static void log_failure(pam_handle_t *pamh, const char *method, const char *user,
			const sd_bus_error *err, int pam_rc)
{
	pam_syslog(pamh, pam_rc == PAM_AUTH_ERR || pam_rc == PAM_USER_UNKNOWN ? LOG_NOTICE : LOG_ERR,
		   "%s for user \"%s\" failed: %s: %s (%s)", method, user,
		   err && err->name ? err->name : "(no error name)",
		   err && err->message ? err->message : "(no message)", pam_strerror(pamh, pam_rc));
}

/* Tells the daemon to drop a login attempt. Fire and forget: flushed when the bus closes. */
static void cancel_login(pam_handle_t *pamh, const struct opts *o, sd_bus *bus,
			 const char *login_id)
{
	sd_bus_message *m = NULL;
	int r = sd_bus_message_new_method_call(bus, &m, HOMED_NAME, HOMED_PATH, HOMED_IFACE,
					       "CancelLogin");
	if (r >= 0)
		r = sd_bus_message_set_expect_reply(m, 0);
	if (r >= 0)
		r = sd_bus_message_append(m, "s", login_id);
	if (r >= 0)
		r = sd_bus_send(bus, m, NULL);
	sd_bus_message_unref(m);
	if (r < 0)
		pam_syslog(pamh, LOG_WARNING, "CancelLogin(%s) not sent: %s", login_id, strerror(-r));
	else if (o->debug)
		pam_syslog(pamh, LOG_DEBUG, "sent CancelLogin(%s)", login_id);
}

static void bus_close(sd_bus *bus)
{
	if (bus)
		sd_bus_flush_close_unref(bus);
}

static const char *item_str(pam_handle_t *pamh, int item)
{
	const void *v = NULL;
	if (pam_get_item(pamh, item, &v) != PAM_SUCCESS || !v)
		return "";
	return v;
}

static int get_user(pam_handle_t *pamh, const char **user)
{
	int rc = pam_get_user(pamh, user, NULL);
	if (rc != PAM_SUCCESS) {
		pam_syslog(pamh, LOG_ERR, "cannot get the user name: %s", pam_strerror(pamh, rc));
		return rc == PAM_CONV_AGAIN ? PAM_INCOMPLETE : rc;
	}
	if (!*user || !**user)
		return PAM_USER_UNKNOWN;
	return PAM_SUCCESS;
}

/* ---- QR code ---------------------------------------------------------------------- */

/* 2, not the standard's 4: a version 14 symbol (73 modules, up to 458 bytes at level L) then
 * still fits 80 columns, and phone scanners read a 2-module quiet zone. */
#define QR_MARGIN 2
#define QR_MAX_COLUMNS 80
/* UTF-8 of U+2588 FULL BLOCK, U+2580 UPPER HALF BLOCK, U+2584 LOWER HALF BLOCK (the source
 * stays ASCII). */
#define QR_FULL "\xe2\x96\x88"
#define QR_UPPER "\xe2\x96\x80"
#define QR_LOWER "\xe2\x96\x84"

static bool is_nostrconnect(const char *uri)
{
	return strncasecmp(uri, "nostrconnect://", 15) == 0; /* URI schemes ignore case */
}

/*
 * Encodes s at level M, or at level L if the M symbol would not fit QR_MAX_COLUMNS (L holds
 * about a quarter more, so a long URI still gets a QR code). QRcode_encodeString as the
 * qrencode CLI calls it by default (mode hint 8-bit, case-sensitive), so tests can compare.
 * Returns NULL with errno ERANGE if no symbol fits, or another errno if encoding failed.
 */
static QRcode *qr_encode(const char *s)
{
	static const QRecLevel levels[] = { QR_ECLEVEL_M, QR_ECLEVEL_L };
	for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++) {
		QRcode *qr = QRcode_encodeString(s, 0, levels[i], QR_MODE_8, 1);
		if (!qr) {
			if (errno == ERANGE)
				continue; /* larger than version 40 at this level */
			return NULL;
		}
		if (qr->width + 2 * QR_MARGIN <= QR_MAX_COLUMNS)
			return qr;
		QRcode_free(qr);
	}
	errno = ERANGE;
	return NULL;
}

/* Whether module (x, y) of the symbol with its quiet zone is light. Outside the symbol is
 * light: the quiet zone, and the half row below an odd number of rows. */
static bool qr_light(const QRcode *qr, int x, int y)
{
	x -= QR_MARGIN;
	y -= QR_MARGIN;
	if (x < 0 || y < 0 || x >= qr->width || y >= qr->width)
		return true;
	return !(qr->data[y * qr->width + x] & 1);
}

/*
 * Draws qr as lines of half blocks, one text row per two module rows, no final newline.
 * The light modules are the drawn ones: most terminals show light text on a dark ground, and
 * a scanner wants dark modules on light (the same choice as qrencode -t UTF8). NULL if out
 * of memory.
 */
static char *qr_render(const QRcode *qr)
{
	int n = qr->width + 2 * QR_MARGIN; /* modules per side, quiet zone included */
	int rows = (n + 1) / 2;
	char *text = malloc((size_t)rows * ((size_t)n * 3 + 1));
	if (!text)
		return NULL;
	char *p = text;
	for (int r = 0; r < rows; r++) {
		for (int x = 0; x < n; x++) {
			bool top = qr_light(qr, x, 2 * r), bottom = qr_light(qr, x, 2 * r + 1);
			const char *c = top ? (bottom ? QR_FULL : QR_UPPER)
					    : (bottom ? QR_LOWER : " ");
			size_t len = strlen(c);
			memcpy(p, c, len);
			p += len;
		}
		*p++ = '\n';
	}
	p[-1] = '\0'; /* the conversation ends each message with a newline */
	return text;
}

/*
 * Shows uri as a QR code, or a line saying why it cannot. One message, not one per row:
 * conversations limit the number of messages per call (PAM_MAX_NUM_MSG, 32, fewer than the
 * rows of a large symbol), and separate calls may be shown one at a time. Returns the
 * conversation's result.
 */
static int show_qr(pam_handle_t *pamh, const struct opts *o, const char *uri)
{
	char *text = NULL;
	QRcode *qr = qr_encode(uri);
	int err = errno;
	if (qr) {
		text = qr_render(qr);
		err = errno;
		QRcode_free(qr);
	}
	if (text) {
		if (o->debug)
			pam_syslog(pamh, LOG_DEBUG, "showing the nostrconnect URI as a QR code");
		int crc = pam_prompt(pamh, PAM_TEXT_INFO, NULL, "%s", text);
		free(text);
		return crc;
	}
	if (err == ERANGE) {
		if (o->debug)
			pam_syslog(pamh, LOG_DEBUG,
				   "nostrconnect URI of %zu bytes: no QR code fits %d columns",
				   strlen(uri), QR_MAX_COLUMNS);
		return pam_prompt(pamh, PAM_TEXT_INFO, NULL,
				  "No QR code: the URI is too long for a QR code %d columns wide.",
				  QR_MAX_COLUMNS);
	}
	pam_syslog(pamh, LOG_WARNING, "cannot make a QR code of the nostrconnect URI: %s",
		   strerror(err));
	return pam_prompt(pamh, PAM_TEXT_INFO, NULL, "No QR code: it could not be made (%s).",
			  strerror(err));
}

/* ---- auth ------------------------------------------------------------------------- */

enum attempt { ATTEMPT_DONE, ATTEMPT_RETRY_WITH_PROMPT };

/* The "password" method. *rc is the result; returns whether to retry with a prompt. */
static enum attempt auth_password(pam_handle_t *pamh, const struct opts *o, sd_bus *bus,
				  const char *user, const char *login_id, const char *prompt,
				  bool stored_allowed, int *rc)
{
	const char *secret = NULL;
	char *typed = NULL;
	bool from_stored = false;

	if (stored_allowed) {
		const void *tok = NULL;
		if (pam_get_item(pamh, PAM_AUTHTOK, &tok) == PAM_SUCCESS && tok) {
			secret = tok;
			from_stored = true;
		} else if (o->use_first_pass) {
			pam_syslog(pamh, LOG_ERR, "use_first_pass: no password from an earlier module");
			cancel_login(pamh, o, bus, login_id);
			*rc = PAM_AUTH_ERR;
			return ATTEMPT_DONE;
		}
	}
	if (!secret) {
		int crc = pam_prompt(pamh, PAM_PROMPT_ECHO_OFF, &typed, "%s",
				     *prompt ? prompt : DEFAULT_PROMPT);
		if (crc != PAM_SUCCESS || !typed) {
			pam_syslog(pamh, LOG_ERR, "conversation failed: %s",
				   crc != PAM_SUCCESS ? pam_strerror(pamh, crc) : "no answer");
			if (typed) {
				explicit_bzero(typed, strlen(typed));
				free(typed);
			}
			cancel_login(pamh, o, bus, login_id);
			*rc = crc == PAM_CONV_AGAIN ? PAM_INCOMPLETE : PAM_CONV_ERR;
			return ATTEMPT_DONE;
		}
		secret = typed;
	}

	sd_bus_error err = SD_BUS_ERROR_NULL;
	int r = homed_call(pamh, o, bus, "CompleteLogin", 0, true, &err, NULL, "ss", login_id, secret);
	if (typed) {
		explicit_bzero(typed, strlen(typed));
		free(typed);
	}
	secret = NULL;
	if (r == 0) {
		*rc = PAM_SUCCESS;
		return ATTEMPT_DONE;
	}
	/* A password that is not valid UTF-8 cannot be the right one. */
	*rc = r == CALL_BAD_ARGUMENT ? PAM_AUTH_ERR : map_error(CTX_AUTH, &err);
	log_failure(pamh, "CompleteLogin", user, &err, *rc);
	bool retry = from_stored && o->try_first_pass && homed_error_is(&err, "AuthFailed");
	sd_bus_error_free(&err);
	return retry ? ATTEMPT_RETRY_WITH_PROMPT : ATTEMPT_DONE;
}

/* The "remote-signer" method. */
static int auth_remote_signer(pam_handle_t *pamh, const struct opts *o, sd_bus *bus,
			      const char *user, const char *login_id, const char *message,
			      const char *uri)
{
	/* Shown even under PAM_SILENT: without them the user cannot answer the challenge. */
	int crc = pam_prompt(pamh, PAM_TEXT_INFO, NULL, "%s",
			     *message ? message : "Approve this login with your remote signer.");
	if (crc == PAM_SUCCESS && *uri && !o->noqr && is_nostrconnect(uri))
		crc = show_qr(pamh, o, uri);
	if (crc == PAM_SUCCESS && *uri)
		crc = pam_prompt(pamh, PAM_TEXT_INFO, NULL, "%s", uri);
	if (crc != PAM_SUCCESS) {
		pam_syslog(pamh, LOG_ERR, "conversation failed: %s", pam_strerror(pamh, crc));
		cancel_login(pamh, o, bus, login_id);
		return crc == PAM_CONV_AGAIN ? PAM_INCOMPLETE : PAM_CONV_ERR;
	}

	sd_bus_error err = SD_BUS_ERROR_NULL;
	int r = homed_call(pamh, o, bus, "CompleteLogin", (uint64_t)o->timeout_sec * USEC_PER_SEC,
			   false, &err, NULL, "ss", login_id, "");
	if (r == 0)
		return PAM_SUCCESS;
	int rc;
	if (r == CALL_BAD_ARGUMENT) {
		rc = PAM_SYSTEM_ERR; /* login_id came from the daemon */
		log_failure(pamh, "CompleteLogin", user, &err, rc);
	} else if (is_no_answer(&err)) {
		pam_syslog(pamh, LOG_NOTICE,
			   "CompleteLogin for user \"%s\": the remote signer did not answer within %u s (%s)",
			   user, o->timeout_sec, err.name);
		cancel_login(pamh, o, bus, login_id);
		rc = PAM_AUTH_ERR;
	} else {
		rc = map_error(CTX_AUTH, &err);
		log_failure(pamh, "CompleteLogin", user, &err, rc);
	}
	sd_bus_error_free(&err);
	return rc;
}

PUBLIC int pam_sm_authenticate(pam_handle_t *pamh, int flags, int argc, const char **argv)
{
	(void)flags;
	struct opts o;
	parse_opts(pamh, argc, argv, &o);

	const char *user;
	int rc = get_user(pamh, &user);
	if (rc != PAM_SUCCESS)
		return rc;
	const char *service = item_str(pamh, PAM_SERVICE);
	const char *rhost = item_str(pamh, PAM_RHOST);

	sd_bus *bus = NULL;
	rc = bus_open(pamh, &o, &bus);
	if (rc != PAM_SUCCESS)
		return rc;

	/* use_first_pass/try_first_pass: the first attempt may use PAM_AUTHTOK; try_first_pass
	 * starts a second login with a prompt if the daemon refused the stored password. */
	bool stored_allowed = o.use_first_pass || o.try_first_pass;
	for (int attempt = 0; attempt < 2; attempt++) {
		sd_bus_error err = SD_BUS_ERROR_NULL;
		sd_bus_message *reply = NULL;
		int r = homed_call(pamh, &o, bus, "BeginLogin", 0, false, &err, &reply, "sss", user,
				   service, rhost);
		if (r != 0) {
			/* A user name that is not valid UTF-8 cannot be enrolled. */
			rc = r == CALL_BAD_ARGUMENT ? PAM_USER_UNKNOWN : map_error(CTX_AUTH, &err);
			log_failure(pamh, "BeginLogin", user, &err, rc);
			sd_bus_error_free(&err);
			break;
		}
		const char *login_id, *method, *prompt, *message, *uri;
		r = sd_bus_message_read(reply, "sssss", &login_id, &method, &prompt, &message, &uri);
		if (r < 0) {
			pam_syslog(pamh, LOG_ERR, "BeginLogin for user \"%s\": malformed reply: %s", user,
				   strerror(-r));
			sd_bus_message_unref(reply);
			rc = PAM_SYSTEM_ERR;
			break;
		}
		if (o.debug)
			pam_syslog(pamh, LOG_DEBUG, "BeginLogin for user \"%s\": login %s, method %s",
				   user, login_id, method);

		enum attempt next = ATTEMPT_DONE;
		if (strcmp(method, "password") == 0) {
			next = auth_password(pamh, &o, bus, user, login_id, prompt,
					     stored_allowed && attempt == 0, &rc);
		} else if (strcmp(method, "remote-signer") == 0) {
			rc = auth_remote_signer(pamh, &o, bus, user, login_id, message, uri);
		} else {
			pam_syslog(pamh, LOG_ERR,
				   "BeginLogin for user \"%s\": unsupported login method \"%s\"", user,
				   method);
			cancel_login(pamh, &o, bus, login_id);
			rc = PAM_AUTHINFO_UNAVAIL;
		}
		sd_bus_message_unref(reply);
		if (next != ATTEMPT_RETRY_WITH_PROMPT)
			break;
	}
	bus_close(bus);
	return rc;
}

PUBLIC int pam_sm_setcred(pam_handle_t *pamh, int flags, int argc, const char **argv)
{
	(void)pamh;
	(void)flags;
	(void)argc;
	(void)argv;
	return PAM_SUCCESS;
}

/* ---- account and session ---------------------------------------------------------- */

static int simple_call(pam_handle_t *pamh, int argc, const char **argv, enum ctx ctx,
		       const char *method, bool session_timeout)
{
	struct opts o;
	parse_opts(pamh, argc, argv, &o);
	const char *user;
	int rc = get_user(pamh, &user);
	if (rc != PAM_SUCCESS)
		return rc;
	sd_bus *bus = NULL;
	rc = bus_open(pamh, &o, &bus);
	if (rc != PAM_SUCCESS)
		return rc;
	uint64_t timeout = session_timeout ? (uint64_t)o.session_timeout_sec * USEC_PER_SEC : 0;
	sd_bus_error err = SD_BUS_ERROR_NULL;
	int r = homed_call(pamh, &o, bus, method, timeout, false, &err, NULL, "s", user);
	if (r == 0) {
		rc = PAM_SUCCESS;
	} else {
		/* A user name that is not valid UTF-8 cannot be enrolled. */
		rc = r == CALL_BAD_ARGUMENT ? PAM_USER_UNKNOWN : map_error(ctx, &err);
		log_failure(pamh, method, user, &err, rc);
	}
	sd_bus_error_free(&err);
	bus_close(bus);
	return rc;
}

PUBLIC int pam_sm_acct_mgmt(pam_handle_t *pamh, int flags, int argc, const char **argv)
{
	(void)flags;
	return simple_call(pamh, argc, argv, CTX_ACCOUNT, "CheckAccount", false);
}

PUBLIC int pam_sm_open_session(pam_handle_t *pamh, int flags, int argc, const char **argv)
{
	(void)flags;
	return simple_call(pamh, argc, argv, CTX_SESSION, "OpenSession", true);
}

PUBLIC int pam_sm_close_session(pam_handle_t *pamh, int flags, int argc, const char **argv)
{
	(void)flags;
	return simple_call(pamh, argc, argv, CTX_SESSION, "CloseSession", true);
}
