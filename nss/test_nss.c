/*
 * test_nss.c: in-process test of libnss_nostr.so.2, run by nss/test.sh.
 *
 * It is C because what it tests is in-process behaviour of a C library loaded by glibc: one
 * long-lived process keeping the module's SQLite connection open while the database file is
 * replaced, ERANGE handling with small buffers (through glibc and by calling the module's
 * entry points directly with exact buffer sizes and a guard zone), 8 threads at once, and
 * fork() while other threads are inside the module.
 *
 * Usage (inside a mount namespace whose /etc/nsswitch.conf says "passwd: files nostr",
 * with LD_LIBRARY_PATH at the build directory and NOSTR_HOMED_USERDB=DB):
 *   test_nss DB NEW_DB_V2 NEW_DB_V3
 * DB holds alice (gecos "Alice") and bob; NEW_DB_V2 and NEW_DB_V3 both hold alice with gecos
 * "Alice v2", bob, and carol (70003). The program renames them over DB itself, at known
 * points. Prints one "PASS: ..." or "FAIL: ..." line per check.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <grp.h>
#include <nss.h>
#include <pthread.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int failures;

static void result(bool ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void result(bool ok, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	printf("%s: ", ok ? "PASS" : "FAIL");
	vprintf(fmt, ap);
	printf("\n");
	va_end(ap);
	fflush(stdout);
	if (!ok)
		failures++;
}

/* Formats a passwd entry as its /etc/passwd line. */
static void fmt_pw(const struct passwd *pw, char *out, size_t n)
{
	snprintf(out, n, "%s:%s:%u:%u:%s:%s:%s", pw->pw_name, pw->pw_passwd, (unsigned)pw->pw_uid,
		 (unsigned)pw->pw_gid, pw->pw_gecos, pw->pw_dir, pw->pw_shell);
}

static void fmt_gr(const struct group *gr, char *out, size_t n)
{
	int k = snprintf(out, n, "%s:%s:%u:", gr->gr_name, gr->gr_passwd, (unsigned)gr->gr_gid);
	for (char **m = gr->gr_mem; *m && k > 0 && (size_t)k < n; m++)
		k += snprintf(out + k, n - (size_t)k, "%s%s", m == gr->gr_mem ? "" : ",", *m);
}

/* getpwnam_r through glibc: the line, "" when not found, or "error N". */
static void lookup_name(const char *name, char *out, size_t n)
{
	struct passwd pw, *res = NULL;
	char buf[1024];
	int e = getpwnam_r(name, &pw, buf, sizeof(buf), &res);
	if (e)
		snprintf(out, n, "error %d", e);
	else if (!res)
		out[0] = 0;
	else
		fmt_pw(res, out, n);
}

static void lookup_uid(uid_t uid, char *out, size_t n)
{
	struct passwd pw, *res = NULL;
	char buf[1024];
	int e = getpwuid_r(uid, &pw, buf, sizeof(buf), &res);
	if (e)
		snprintf(out, n, "error %d", e);
	else if (!res)
		out[0] = 0;
	else
		fmt_pw(res, out, n);
}

static void lookup_group(const char *name, char *out, size_t n)
{
	struct group gr, *res = NULL;
	char buf[1024];
	int e = getgrnam_r(name, &gr, buf, sizeof(buf), &res);
	if (e)
		snprintf(out, n, "error %d", e);
	else if (!res)
		out[0] = 0;
	else
		fmt_gr(res, out, n);
}

#define ALICE_V1 "alice:x:70001:70001:Alice:/home/alice:/bin/bash"
#define ALICE_V2 "alice:x:70001:70001:Alice v2:/home/alice:/bin/bash"
#define BOB "bob:x:70002:70002:Bob:/home/bob:/bin/sh"
#define CAROL "carol:x:70003:70003:Carol:/home/carol:/bin/zsh"
#define ADMINS "nostr-admins:x:70100:alice"
#define ADMINS_V2 "nostr-admins:x:70100:alice,carol"

/* ---- direct calls into the module, exact buffer sizes ------------------------------ */

typedef enum nss_status (*getpwnam_fn)(const char *, struct passwd *, char *, size_t, int *);
typedef enum nss_status (*getgrnam_fn)(const char *, struct group *, char *, size_t, int *);

#define GUARD 64

/* Every size below the minimum must be TRYAGAIN/ERANGE, the minimum must succeed, and no
 * call may write past buflen. Returns the minimum size, or 0 on failure. */
static size_t exact_sizes_pw(getpwnam_fn fn, const char *name, const char *want)
{
	for (size_t len = 0; len < 512; len++) {
		char *buf = malloc(len + GUARD);
		memset(buf, 0xA5, len + GUARD);
		struct passwd pw;
		int err = 0;
		enum nss_status st = fn(name, &pw, buf, len, &err);
		bool guard_ok = true;
		for (size_t i = len; i < len + GUARD; i++)
			if ((unsigned char)buf[i] != 0xA5)
				guard_ok = false;
		char line[512] = "";
		if (st == NSS_STATUS_SUCCESS)
			fmt_pw(&pw, line, sizeof(line));
		free(buf);
		if (!guard_ok) {
			printf("# buflen %zu: wrote past the buffer\n", len);
			return 0;
		}
		if (st == NSS_STATUS_SUCCESS)
			return strcmp(line, want) == 0 ? len : 0;
		if (st != NSS_STATUS_TRYAGAIN || err != ERANGE) {
			printf("# buflen %zu: status %d errno %d\n", len, st, err);
			return 0;
		}
	}
	return 0;
}

static size_t exact_sizes_gr(getgrnam_fn fn, const char *name, const char *want)
{
	for (size_t len = 0; len < 512; len++) {
		char *buf = malloc(len + GUARD);
		memset(buf, 0xA5, len + GUARD);
		struct group gr;
		int err = 0;
		enum nss_status st = fn(name, &gr, buf, len, &err);
		bool guard_ok = true;
		for (size_t i = len; i < len + GUARD; i++)
			if ((unsigned char)buf[i] != 0xA5)
				guard_ok = false;
		char line[512] = "";
		if (st == NSS_STATUS_SUCCESS)
			fmt_gr(&gr, line, sizeof(line));
		free(buf);
		if (!guard_ok) {
			printf("# buflen %zu: wrote past the buffer\n", len);
			return 0;
		}
		if (st == NSS_STATUS_SUCCESS) {
			if (strcmp(line, want) != 0)
				printf("# got %s\n", line);
			return strcmp(line, want) == 0 ? len : 0;
		}
		if (st != NSS_STATUS_TRYAGAIN || err != ERANGE) {
			printf("# buflen %zu: status %d errno %d\n", len, st, err);
			return 0;
		}
	}
	return 0;
}

/* ---- threads ---------------------------------------------------------------------- */

#define THREADS 8
#define ITERATIONS 3000

struct worker {
	pthread_t tid;
	int mismatches;
	char first_bad[600];
};

static volatile int stop_background;

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	char out[256];
	for (int i = 0; i < ITERATIONS; i++) {
		const char *want;
		switch (i % 5) {
		case 0:
			lookup_name("alice", out, sizeof(out));
			want = ALICE_V2;
			break;
		case 1:
			lookup_name("bob", out, sizeof(out));
			want = BOB;
			break;
		case 2:
			lookup_uid(70003, out, sizeof(out));
			want = CAROL;
			break;
		case 3:
			lookup_group("nostr-admins", out, sizeof(out));
			want = ADMINS_V2;
			break;
		default:
			lookup_name("nosuchuser", out, sizeof(out));
			want = "";
		}
		if (strcmp(out, want) != 0) {
			if (!w->mismatches)
				snprintf(w->first_bad, sizeof(w->first_bad), "%s (want %s)", out, want);
			w->mismatches++;
		}
	}
	return NULL;
}

static void *background_main(void *arg)
{
	(void)arg;
	char out[256];
	while (!stop_background)
		lookup_name("bob", out, sizeof(out));
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: %s DB NEW_DB_V2 NEW_DB_V3\n", argv[0]);
		return 2;
	}
	const char *db = argv[1], *v2 = argv[2], *v3 = argv[3];
	char out[512];

	/* 1. The first lookup opens the connection that the rest of the process keeps. */
	lookup_name("alice", out, sizeof(out));
	result(strcmp(out, ALICE_V1) == 0, "in-process getpwnam_r(alice) before replacement: %s", out);

	/* 2. A tiny buffer gives ERANGE through glibc, a bigger one succeeds. */
	{
		struct passwd pw, *res = NULL;
		char small[8], big[1024];
		int e1 = getpwnam_r("alice", &pw, small, sizeof(small), &res);
		result(e1 == ERANGE && res == NULL, "getpwnam_r(alice) with an 8-byte buffer gives ERANGE (got %d)", e1);
		int e2 = getpwnam_r("alice", &pw, big, sizeof(big), &res);
		if (!e2 && res)
			fmt_pw(res, out, sizeof(out));
		result(e2 == 0 && res && strcmp(out, ALICE_V1) == 0, "then a 1024-byte buffer succeeds");
	}

	/* 3. The module's entry points at every buffer size from 0 up. */
	void *h = dlopen("libnss_nostr.so.2", RTLD_NOW);
	getpwnam_fn pwnam = h ? (getpwnam_fn)dlsym(h, "_nss_nostr_getpwnam_r") : NULL;
	getgrnam_fn grnam = h ? (getgrnam_fn)dlsym(h, "_nss_nostr_getgrnam_r") : NULL;
	result(pwnam && grnam, "dlopen libnss_nostr.so.2 and find its entry points");
	if (pwnam && grnam) {
		size_t min = exact_sizes_pw(pwnam, "alice", ALICE_V1);
		/* alice\0 x\0 Alice\0 /home/alice\0 /bin/bash\0 = 6+2+6+12+10 */
		result(min == 36, "_nss_nostr_getpwnam_r: TRYAGAIN/ERANGE below 36 bytes, success at 36 (got %zu), no write past buflen", min);
		min = exact_sizes_gr(grnam, "nostr-admins", ADMINS);
		result(min > 0, "_nss_nostr_getgrnam_r(nostr-admins): TRYAGAIN/ERANGE then success at %zu bytes, no write past buflen", min);
		struct passwd pw;
		char buf[256];
		int err = 0;
		enum nss_status st = pwnam("nosuchuser", &pw, buf, sizeof(buf), &err);
		result(st == NSS_STATUS_NOTFOUND, "_nss_nostr_getpwnam_r(nosuchuser) is NSS_STATUS_NOTFOUND (got %d)", st);
	}

	/* 4. Replace the database file under the open connection. */
	if (rename(v2, db) != 0) {
		perror("rename");
		return 2;
	}
	lookup_name("alice", out, sizeof(out));
	result(strcmp(out, ALICE_V2) == 0, "same process after the file was replaced: %s", out);
	lookup_uid(70003, out, sizeof(out));
	result(strcmp(out, CAROL) == 0, "a user only in the new file resolves by uid: %s", out);
	lookup_group("nostr-admins", out, sizeof(out));
	result(strcmp(out, ADMINS_V2) == 0, "group members from the new file: %s", out);

	/* 5. 8 threads at once, with the file replaced again (same content) midway. */
	struct worker w[THREADS];
	memset(w, 0, sizeof(w));
	for (int i = 0; i < THREADS; i++)
		pthread_create(&w[i].tid, NULL, worker_main, &w[i]);
	usleep(20000);
	int rename_rc = rename(v3, db);
	int mismatches = 0;
	const char *bad = "";
	for (int i = 0; i < THREADS; i++) {
		pthread_join(w[i].tid, NULL);
		mismatches += w[i].mismatches;
		if (w[i].mismatches && !*bad)
			bad = w[i].first_bad;
	}
	result(rename_rc == 0 && mismatches == 0,
	       "%d threads x %d lookups, file replaced midway: %d mismatches %s", THREADS,
	       ITERATIONS, mismatches, bad);

	/* 6. fork() while other threads are inside the module: children must not deadlock. */
	{
		pthread_t bg[3];
		stop_background = 0;
		for (int i = 0; i < 3; i++)
			pthread_create(&bg[i], NULL, background_main, NULL);
		int children = 0, good = 0;
		for (int i = 0; i < 40; i++) {
			pid_t pid = fork();
			if (pid == 0) {
				alarm(10);
				char o[256];
				lookup_name("alice", o, sizeof(o));
				bool ok = strcmp(o, ALICE_V2) == 0;
				lookup_uid(70002, o, sizeof(o));
				ok = ok && strcmp(o, BOB) == 0;
				_exit(ok ? 0 : 1);
			}
			if (pid > 0)
				children++;
			usleep(2000);
		}
		for (int i = 0; i < children; i++) {
			int status;
			if (wait(&status) > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0)
				good++;
		}
		stop_background = 1;
		for (int i = 0; i < 3; i++)
			pthread_join(bg[i], NULL);
		result(children == 40 && good == 40,
		       "fork() x40 while 3 threads do lookups: %d of %d children resolved correctly", good, children);
	}

	/* 7. Enumeration in this process sees the three users of the new file. */
	{
		int nostr = 0;
		struct passwd *p;
		setpwent();
		while ((p = getpwent()) != NULL)
			if (p->pw_uid >= 70001 && p->pw_uid <= 70003)
				nostr++;
		endpwent();
		result(nostr == 3, "getpwent enumeration lists 3 nostr users (got %d)", nostr);
	}

	return failures ? 1 : 0;
}
