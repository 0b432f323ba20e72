/*
 * The berth CLI's helper process: what the client (berth-cli.c), the helper
 * (berth-cli-serve.c) and the exit hook (berth-exit.c) share.
 *
 * Why a helper at all: a fresh Node process costs about 40 ms before the
 * CLI's first line runs, against a few ms for a native one. So the CLI keeps
 * one Node process started ahead of time, with the CLI's code already read,
 * waiting on a socket. The native client hands it the command (arguments,
 * environment, working directory, umask and the stdio descriptors
 * themselves, so the command reads and writes the caller's real terminal,
 * pipes and files) and waits for the exit status. A helper serves exactly
 * one command, as a fresh process would; as that command ends, the next
 * helper is started, off the command's path. Protocol: native/PROTOCOL.md.
 *
 * A helper is only ever shared by callers that would have run the same
 * thing in the same world: the socket's name is a hash of the user and
 * groups, the namespaces, the root directory, the cgroup, resource limits,
 * priority, CPU affinity, capabilities and seccomp state, the environment
 * Node reads only as it starts, and the files of this checkout that make up
 * the CLI. The directory holding it is the caller's own (mode 0700,
 * checked); both ends check that the other has their uid, namespaces, root
 * and privileges (helper_same_world), so a same-uid process in a sandbox
 * can neither use a helper nor pose as one.
 */
#ifndef BERTH_CLI_HELPER_H
#define BERTH_CLI_HELPER_H

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dlfcn.h>
#include <sched.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <signal.h>
#include <unistd.h>

/* Messages from the helper to the client. */
#define HELPER_ACCEPTED 'A' /* the command is the helper's now */
#define HELPER_STATUS 'S'   /* followed by one byte: the exit status */
#define HELPER_READS_TERMINAL 'R' /* the command reads stdin, a terminal */

/* Room for /proc/PID/status or cgroup (a long group list makes status long). */
#define HELPER_PROC_TEXT 65536

/* Default idle time before a waiting helper ends, in seconds. */
#define HELPER_IDLE_DEFAULT 300

struct helper_paths {
	uint64_t key; /* helper_key's */
	char checkout[PATH_MAX];
	char dir[PATH_MAX];
	char sock[sizeof(((struct sockaddr_un *)0)->sun_path)];
	char lock[PATH_MAX];
};

/* Files of the checkout a helper is made of: a change to any retires it. */
static const char *const helper_files[] = {
	"node_modules/.bin/node", "dist/berth.cjs", "dist/berth-cli.cjs",
	"native/build/berth-cli", "native/build/berth-cli-watch", "native/build/berth-cli-serve.so", "native/build/berth-exit.so",
};

/* The namespaces a helper and its callers share (/proc/PID/ns/NAME). */
static const char *const helper_namespaces[] = { "mnt", "net", "pid", "user", "ipc", "uts", "cgroup" };

/* Whether this environment may use a helper (BERTH_CLI_HELPER=off, or Node
 * options that only a fresh process would honour, say no). */
static inline int helper_wanted(void)
{
	const char *h = getenv("BERTH_CLI_HELPER");
	if (h && (!strcmp(h, "off") || !strcmp(h, "0") || !strcmp(h, "false") || !strcmp(h, "no")))
		return 0;
	return !getenv("NODE_OPTIONS") && !getenv("NODE_V8_COVERAGE");
}

/* `path` without its last `levels` components, into out. */
static inline int helper_strip(const char *path, int levels, char *out, size_t n)
{
	if (snprintf(out, n, "%s", path) >= (int)n)
		return -1;
	while (levels-- > 0) {
		char *slash = strrchr(out, '/');
		if (!slash || slash == out)
			return -1;
		*slash = 0;
	}
	return 0;
}

static inline void fnv(uint64_t *h, const void *data, size_t n)
{
	const unsigned char *p = data;
	while (n--) {
		*h ^= *p++;
		*h *= 0x100000001b3ULL;
	}
}

static inline void fnv_stat(uint64_t *h, const struct stat *st)
{
	fnv(h, &st->st_dev, sizeof st->st_dev);
	fnv(h, &st->st_ino, sizeof st->st_ino);
	fnv(h, &st->st_size, sizeof st->st_size);
	fnv(h, &st->st_mtim, sizeof st->st_mtim);
}

/* A small file's contents (less than n bytes, NUL-terminated): its length, or -1. */
static inline ssize_t helper_read(const char *path, char *buf, size_t n)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	size_t got = 0;
	ssize_t r = 0;

	if (fd < 0)
		return -1;
	while (got < n - 1 && (r = read(fd, buf + got, n - 1 - got)) > 0)
		got += (size_t)r;
	close(fd);
	buf[got] = 0;
	/* Full: perhaps cut short, and a check on a cut text would pass by default. */
	return r < 0 || got == n - 1 ? -1 : (ssize_t)got;
}

/* Hashes the privilege lines of a /proc/PID/status text. */
static inline void helper_privileges(uint64_t *h, const char *status)
{
	static const char *const keys[] = { "\nCapInh:", "\nCapPrm:", "\nCapEff:", "\nCapBnd:", "\nCapAmb:", "\nNoNewPrivs:", "\nSeccomp:" };
	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
		const char *line = strstr(status, keys[i]);
		const char *end = line ? strchr(line + 1, '\n') : NULL;
		if (line)
			fnv(h, line, end ? (size_t)(end - line) : strlen(line));
		else
			fnv(h, keys[i], 1);
	}
}

/* The hash of everything that must match for a helper to serve a caller. */
static inline int helper_key(const char *checkout, uint64_t *key)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	uid_t uid = getuid();
	gid_t gid = getgid(), groups[256];
	int ngroups = getgroups(256, groups);
	struct stat st;
	char path[PATH_MAX];

	if (ngroups < 0)
		return -1;
	fnv(&h, &uid, sizeof uid);
	fnv(&h, &gid, sizeof gid);
	fnv(&h, groups, sizeof groups[0] * (size_t)ngroups);
	for (size_t i = 0; i < sizeof helper_namespaces / sizeof helper_namespaces[0]; i++) {
		snprintf(path, sizeof path, "/proc/self/ns/%s", helper_namespaces[i]);
		if (stat(path, &st) == 0)
			fnv(&h, &st.st_ino, sizeof st.st_ino);
	}
	if (stat("/", &st) < 0)
		return -1;
	fnv(&h, &st.st_dev, sizeof st.st_dev);
	fnv(&h, &st.st_ino, sizeof st.st_ino);
	for (size_t i = 0; i < sizeof helper_files / sizeof helper_files[0]; i++) {
		if (snprintf(path, sizeof path, "%s/%s", checkout, helper_files[i]) >= (int)sizeof path || stat(path, &st) < 0)
			return -1;
		fnv_stat(&h, &st);
	}
	/* What a process inherits and a helper cannot take over per command. */
	char buf[HELPER_PROC_TEXT];
	ssize_t n = helper_read("/proc/self/cgroup", buf, sizeof buf);
	if (n < 0)
		return -1;
	fnv(&h, buf, (size_t)n);
	n = helper_read("/proc/self/status", buf, sizeof buf);
	if (n < 0)
		return -1;
	helper_privileges(&h, buf);
	for (int r = 0; r < RLIM_NLIMITS; r++) {
		struct rlimit lim;
		if (getrlimit(r, &lim) < 0)
			continue;
		/* Node raises its soft limit on descriptors to the hard one as it
		 * starts, so a fresh process would run the command with that too. */
		if (r == RLIMIT_NOFILE)
			lim.rlim_cur = lim.rlim_max;
		fnv(&h, &lim, sizeof lim);
	}
	errno = 0;
	int nice = getpriority(PRIO_PROCESS, 0);
	fnv(&h, &nice, sizeof nice);
	cpu_set_t cpus;
	if (sched_getaffinity(0, sizeof cpus, &cpus) == 0)
		fnv(&h, &cpus, sizeof cpus);
	/* The environment read once, as the process starts, by the dynamic
	 * loader and glibc, Node, OpenSSL and libuv (and the proxy settings
	 * Node may be told to take from it), in any order (a sum of the
	 * entries' hashes). */
	extern char **environ;
	static const char *const startup_env[] = {
		"LD_", "GLIBC_TUNABLES=", "MALLOC_", "NODE_", "OPENSSL_", "SSL_CERT_", "UV_", "LANG=", "LC_",
		"HTTP_PROXY=", "HTTPS_PROXY=", "NO_PROXY=", "http_proxy=", "https_proxy=", "no_proxy=",
	};
	uint64_t env_sum = 0;
	for (char **e = environ; *e; e++)
		for (size_t i = 0; i < sizeof startup_env / sizeof startup_env[0]; i++)
			if (!strncmp(*e, startup_env[i], strlen(startup_env[i]))) {
				uint64_t one = 0xcbf29ce484222325ULL;
				fnv(&one, *e, strlen(*e));
				env_sum += one;
			}
	fnv(&h, &env_sum, sizeof env_sum);
	*key = h;
	return 0;
}

/*
 * Whether process `pid` (the other end of a helper's socket) lives in this
 * process's world: the same namespaces, root directory, capabilities,
 * no_new_privs and seccomp mode. The uid is checked by the caller
 * (SO_PEERCRED). 1 when it does.
 */
static inline int helper_same_world(pid_t pid)
{
	const size_t count = sizeof helper_namespaces / sizeof helper_namespaces[0];
	char mine[64], theirs[64], buf[HELPER_PROC_TEXT];
	struct stat a, b;
	uint64_t ha = 0, hb = 0;

	if (pid <= 0)
		return 0;
	/* Each namespace, then the root directory. */
	for (size_t i = 0; i <= count; i++) {
		if (i < count) {
			snprintf(mine, sizeof mine, "/proc/self/ns/%s", helper_namespaces[i]);
			snprintf(theirs, sizeof theirs, "/proc/%d/ns/%s", (int)pid, helper_namespaces[i]);
		} else {
			snprintf(mine, sizeof mine, "/proc/self/root");
			snprintf(theirs, sizeof theirs, "/proc/%d/root", (int)pid);
		}
		int ok_a = stat(mine, &a) == 0, ok_b = stat(theirs, &b) == 0;
		if (ok_a != ok_b || (ok_a && (a.st_dev != b.st_dev || a.st_ino != b.st_ino)))
			return 0;
	}
	snprintf(theirs, sizeof theirs, "/proc/%d/status", (int)pid);
	ssize_t n = helper_read("/proc/self/status", buf, sizeof buf);
	if (n < 0)
		return 0;
	helper_privileges(&ha, buf);
	if (helper_read(theirs, buf, sizeof buf) < 0)
		return 0;
	helper_privileges(&hb, buf);
	return ha == hb;
}

/* Takes the slot's lock file (see helper_spawn and berth-cli-serve.c):
 * the descriptor when this process now holds it, else -1. A lock file
 * removed and made again meanwhile is the wrong one: tried again. */
static inline int helper_lock(const char *path)
{
	for (int tries = 0; tries < 5; tries++) {
		struct stat held, now;
		int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
		if (fd < 0)
			return -1;
		if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
			close(fd);
			return -1;
		}
		if (fstat(fd, &held) == 0 && stat(path, &now) == 0 && held.st_ino == now.st_ino && held.st_dev == now.st_dev)
			return fd;
		close(fd);
	}
	return -1;
}

/* Closes every descriptor from `from` up, but `keep` (-1: none). */
static inline void helper_close_from(int from, int keep)
{
	if (keep < from) {
		if (syscall(SYS_close_range, from, ~0U, 0) == 0)
			return;
	} else if ((keep == from || syscall(SYS_close_range, from, keep - 1, 0) == 0) &&
		   syscall(SYS_close_range, keep + 1, ~0U, 0) == 0) {
		return;
	}
	/* Kernels before 5.9: one by one. */
	struct rlimit lim;
	int max = getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < 65536 ? (int)lim.rlim_cur : 65536;
	for (int fd = from; fd < max; fd++)
		if (fd != keep)
			close(fd);
}

/* The caller's helper directory, made if missing; refused unless it is a
 * directory of this user that nobody else may enter. */
static inline int helper_dir(char *out, size_t n)
{
	const char *d = getenv("BERTH_CLI_HELPER_DIR"), *x = getenv("XDG_RUNTIME_DIR");
	struct stat st;
	int len;

	if (d && *d)
		len = d[0] == '/' ? snprintf(out, n, "%s", d) : -1; /* relative: means another place to the helper */
	else if (x && x[0] == '/')
		len = snprintf(out, n, "%s/berth-cli", x);
	else
		len = snprintf(out, n, "/tmp/berth-cli-%u", (unsigned)getuid());
	if (len < 0 || len >= (int)n)
		return -1;
	if (mkdir(out, 0700) < 0 && errno != EEXIST)
		return -1;
	if (lstat(out, &st) < 0 || !S_ISDIR(st.st_mode) || st.st_uid != getuid() || (st.st_mode & 077))
		return -1;
	return 0;
}

/* The checkout, from the path of one of its native/build/ files. */
static inline int helper_checkout(const char *file, char *out, size_t n)
{
	char real[PATH_MAX];
	return realpath(file, real) ? helper_strip(real, 3, out, n) : -1;
}

/* Where this caller's helper listens and locks (and its key), for the checkout given. */
static inline int helper_paths(const char *checkout, struct helper_paths *p)
{
	if (snprintf(p->checkout, sizeof p->checkout, "%s", checkout) >= (int)sizeof p->checkout)
		return -1;
	if (helper_key(checkout, &p->key) < 0 || helper_dir(p->dir, sizeof p->dir) < 0)
		return -1;
	if (snprintf(p->sock, sizeof p->sock, "%s/%016llx.sock", p->dir, (unsigned long long)p->key) >= (int)sizeof p->sock)
		return -1;
	if (snprintf(p->lock, sizeof p->lock, "%s/%016llx.lock", p->dir, (unsigned long long)p->key) >= (int)sizeof p->lock)
		return -1;
	return 0;
}

/* helper_paths for the checkout of the library holding `self` (CHECKOUT/native/build/NAME.so). */
static inline int helper_paths_of_library(void *self, struct helper_paths *p)
{
	Dl_info info;
	char checkout[PATH_MAX];
	return dladdr(self, &info) && helper_checkout(info.dli_fname, checkout, sizeof checkout) == 0 ? helper_paths(checkout, p) : -1;
}

/* What starting the next helper takes, worked out beforehand (helper_spawn_prepare). */
struct helper_spawn {
	char node[PATH_MAX], launch[PATH_MAX], dir[PATH_MAX];
};

/*
 * Whether to start the next helper: not when one is alive (it holds the lock
 * from its start until it takes a command). Everything the start needs is
 * prepared here, so that helper_spawn_run opens nothing in this process.
 * 0 when a helper should be started.
 */
static inline int helper_spawn_prepare(const struct helper_paths *p, struct helper_spawn *s)
{
	int fd = helper_lock(p->lock);
	/* Released at once: the new helper takes it itself; two starting together settle it there. */
	if (fd < 0)
		return -1;
	close(fd);
	if (snprintf(s->node, sizeof s->node, "%s/node_modules/.bin/node", p->checkout) >= (int)sizeof s->node ||
	    snprintf(s->launch, sizeof s->launch, "%s/dist/berth.cjs", p->checkout) >= (int)sizeof s->launch ||
	    snprintf(s->dir, sizeof s->dir, "%s", p->dir) >= (int)sizeof s->dir)
		return -1;
	return 0;
}

/*
 * Start the next helper, detached: a session of its own, stdio on
 * /dev/null, working directory /, no other descriptors. Called from a
 * process that may have threads, so the children only make
 * async-signal-safe calls before exec. The forks are raw system calls: the
 * process's fork handlers (Node's among them) are not for a child that only
 * execs.
 */
static inline void helper_spawn_run(struct helper_spawn *s)
{
	char *const argv[] = { s->node, s->launch, (char *)"--cli-helper", s->dir, NULL };
	if (setenv("BERTH_CLI_SERVE", "1", 1) < 0)
		return;
	pid_t pid = (pid_t)syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
	if (pid == 0) {
		setsid();
		if (syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0) != 0)
			_exit(0);
		int null = open("/dev/null", O_RDWR);
		if (null < 0 || chdir("/") < 0)
			_exit(127);
		dup2(null, 0);
		dup2(null, 1);
		dup2(null, 2);
		helper_close_from(3, -1);
		execv(s->node, argv);
		_exit(127);
	}
	unsetenv("BERTH_CLI_SERVE");
	if (pid > 0)
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
}

#endif
