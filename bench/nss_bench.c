/*
 * nss_bench.c: in-process benchmark of getpwnam_r through libnss_nostr.so.2 against nss files.
 *
 * Usage (NOSTR_HOMED_USERDB must name the user database the module reads):
 *   nss_bench MODULE HIT_NAME MISS_NAME FILES_NAME [ROUNDS [ROUND_MS]]
 *
 * It dlopens MODULE and calls _nss_nostr_getpwnam_r directly, and calls glibc's own files
 * module entry point _nss_files_getpwnam_r (since glibc 2.34 it lives in libc.so.6; the
 * libnss_files.so.2 stub is dlopened first for older layouts) directly too. Both sides are
 * then the same kind of call, a module entry point with no NSS dispatch in front, so the ratio
 * is module against module; it needs no root and no private nsswitch.conf. For reference it
 * also times glibc's getpwnam_r(FILES_NAME) through the machine's own nsswitch.conf (the
 * dispatch overhead every lookup pays, whatever the module).
 *
 * Cases, each timed for ROUNDS rounds (default 9) of about ROUND_MS ms (default 30), the cases
 * interleaved round by round so drift hits them alike:
 *   nostr_hit    _nss_nostr_getpwnam_r(HIT_NAME)   a user in the database: SUCCESS
 *   files_hit    _nss_files_getpwnam_r(FILES_NAME) a user in /etc/passwd: SUCCESS
 *   nostr_miss   _nss_nostr_getpwnam_r(MISS_NAME)  a name nobody manages: NOTFOUND
 *   files_miss   _nss_files_getpwnam_r(MISS_NAME)  the same name in /etc/passwd: NOTFOUND
 *   glibc_files_hit getpwnam_r(FILES_NAME)         through glibc and /etc/nsswitch.conf
 * Every case's answer is checked before it is timed. Prints one JSON object on stdout:
 *   {"rounds":R,"cases":[{"name":..,"iterations":N,"median_ns":..,"min_ns":..,"max_ns":..}]}
 * and exits 0, or prints why on stderr and exits 1.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <nss.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef enum nss_status (*getpwnam_fn)(const char *, struct passwd *, char *, size_t, int *);

#define MAX_ROUNDS 101
#define BUFLEN 4096

static getpwnam_fn nostr_fn, files_fn;

struct bcase {
	const char *name;
	int kind; /* 0 module call, 1 glibc getpwnam_r */
	getpwnam_fn fn;
	const char *user;
	enum nss_status want;
	long iterations;
	double ns[MAX_ROUNDS];
};

static double now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* One call; returns the status (glibc's answer mapped onto nss_status). */
static enum nss_status call(const struct bcase *c, struct passwd *pw, char *buf)
{
	if (c->kind == 1) {
		struct passwd *res = NULL;
		int e = getpwnam_r(c->user, pw, buf, BUFLEN, &res);
		if (e)
			return NSS_STATUS_UNAVAIL;
		return res ? NSS_STATUS_SUCCESS : NSS_STATUS_NOTFOUND;
	}
	int err = 0;
	return c->fn(c->user, pw, buf, BUFLEN, &err);
}

/* Times n calls; returns ns per call. Answers are not re-checked inside the loop beyond the
 * status, which is cheap and keeps the compiler from dropping the call. */
static double run(const struct bcase *c, long n)
{
	static char buf[BUFLEN];
	struct passwd pw;
	long bad = 0;
	double t0 = now_ns();
	for (long i = 0; i < n; i++)
		bad += call(c, &pw, buf) != c->want;
	double t = now_ns() - t0;
	if (bad) {
		fprintf(stderr, "nss_bench: %s: %ld of %ld calls answered wrongly\n", c->name, bad, n);
		exit(1);
	}
	return t / (double)n;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static getpwnam_fn find_files_fn(void)
{
	/* glibc >= 2.34 has the files module inside libc.so.6; libnss_files.so.2 is a stub whose
	 * dependency (libc) dlsym searches too. */
	void *h = dlopen("libnss_files.so.2", RTLD_NOW);
	void *f = h ? dlsym(h, "_nss_files_getpwnam_r") : NULL;
	if (!f)
		f = dlsym(RTLD_DEFAULT, "_nss_files_getpwnam_r");
	return (getpwnam_fn)f;
}

int main(int argc, char **argv)
{
	if (argc < 5 || argc > 7) {
		fprintf(stderr, "usage: %s MODULE HIT_NAME MISS_NAME FILES_NAME [ROUNDS [ROUND_MS]]\n", argv[0]);
		return 2;
	}
	const char *module = argv[1], *hit = argv[2], *miss = argv[3], *files_user = argv[4];
	int rounds = argc > 5 ? atoi(argv[5]) : 9;
	double round_ms = argc > 6 ? atof(argv[6]) : 30;
	if (rounds < 1 || rounds > MAX_ROUNDS || round_ms <= 0) {
		fprintf(stderr, "nss_bench: ROUNDS must be 1..%d and ROUND_MS positive\n", MAX_ROUNDS);
		return 2;
	}
	if (!getenv("NOSTR_HOMED_USERDB")) {
		fprintf(stderr, "nss_bench: set NOSTR_HOMED_USERDB to the user database\n");
		return 2;
	}
	void *h = dlopen(module, RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		fprintf(stderr, "nss_bench: dlopen %s: %s\n", module, dlerror());
		return 1;
	}
	nostr_fn = (getpwnam_fn)dlsym(h, "_nss_nostr_getpwnam_r");
	files_fn = find_files_fn();
	if (!nostr_fn || !files_fn) {
		fprintf(stderr, "nss_bench: missing %s\n", nostr_fn ? "_nss_files_getpwnam_r" : "_nss_nostr_getpwnam_r");
		return 1;
	}

	struct bcase cases[] = {
		{"nostr_hit", 0, nostr_fn, hit, NSS_STATUS_SUCCESS, 0, {0}},
		{"files_hit", 0, files_fn, files_user, NSS_STATUS_SUCCESS, 0, {0}},
		{"nostr_miss", 0, nostr_fn, miss, NSS_STATUS_NOTFOUND, 0, {0}},
		{"files_miss", 0, files_fn, miss, NSS_STATUS_NOTFOUND, 0, {0}},
		{"glibc_files_hit", 1, NULL, files_user, NSS_STATUS_SUCCESS, 0, {0}},
	};
	const int ncases = (int)(sizeof(cases) / sizeof(cases[0]));

	/* Check each answer, warm up (the module opens its connection on the first call), then
	 * size each case's round to about round_ms. */
	for (int i = 0; i < ncases; i++) {
		struct bcase *c = &cases[i];
		static char buf[BUFLEN];
		struct passwd pw;
		enum nss_status st = call(c, &pw, buf);
		if (st != c->want) {
			fprintf(stderr, "nss_bench: %s: %s answered status %d, want %d\n", c->name, c->user, st, c->want);
			return 1;
		}
		if (st == NSS_STATUS_SUCCESS && strcmp(pw.pw_name, c->user) != 0) {
			fprintf(stderr, "nss_bench: %s: asked for %s, got %s\n", c->name, c->user, pw.pw_name);
			return 1;
		}
		long n = 16;
		double per;
		for (;;) {
			per = run(c, n);
			if (per * (double)n >= 5e6 || n >= (1L << 30))
				break;
			n *= 4;
		}
		c->iterations = (long)(round_ms * 1e6 / per);
		if (c->iterations < 10)
			c->iterations = 10;
	}

	for (int r = 0; r < rounds; r++)
		for (int i = 0; i < ncases; i++)
			cases[i].ns[r] = run(&cases[i], cases[i].iterations);

	printf("{\"rounds\":%d,\"cases\":[", rounds);
	for (int i = 0; i < ncases; i++) {
		struct bcase *c = &cases[i];
		qsort(c->ns, (size_t)rounds, sizeof(double), cmp_double);
		double median = rounds % 2 ? c->ns[rounds / 2] : (c->ns[rounds / 2 - 1] + c->ns[rounds / 2]) / 2;
		printf("%s{\"name\":\"%s\",\"iterations\":%ld,\"median_ns\":%.1f,\"min_ns\":%.1f,\"max_ns\":%.1f}",
		       i ? "," : "", c->name, c->iterations, median, c->ns[0], c->ns[rounds - 1]);
	}
	printf("]}\n");
	return 0;
}
