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
 * groups, the namespaces, the root directory, and the files of this
 * checkout that make up the CLI. The directory holding it is the caller's
 * own (mode 0700, checked), and both ends check the other's uid.
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
#include <sys/file.h>
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

/* Default idle time before a waiting helper ends, in seconds. */
#define HELPER_IDLE_DEFAULT 300

struct helper_paths {
	char checkout[PATH_MAX];
	char dir[PATH_MAX];
	char sock[sizeof(((struct sockaddr_un *)0)->sun_path)];
	char lock[PATH_MAX];
};

/* Files of the checkout a helper is made of: a change to any retires it. */
static const char *const helper_files[] = {
	"node_modules/.bin/node", "dist/berth.cjs", "dist/berth-cli.cjs",
	"native/build/berth-cli", "native/build/berth-cli-serve.so", "native/build/berth-exit.so",
};

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

/* The hash of everything that must match for a helper to serve a caller. */
static inline int helper_key(const char *checkout, uint64_t *key)
{
	static const char *const ns[] = { "mnt", "net", "pid", "user", "ipc", "uts", "cgroup" };
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
	for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++) {
		snprintf(path, sizeof path, "/proc/self/ns/%s", ns[i]);
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
	*key = h;
	return 0;
}

/* The caller's helper directory, made if missing; refused unless it is a
 * directory of this user that nobody else may enter. */
static inline int helper_dir(char *out, size_t n)
{
	const char *d = getenv("BERTH_CLI_HELPER_DIR"), *x = getenv("XDG_RUNTIME_DIR");
	struct stat st;
	int len;

	if (d && *d)
		len = snprintf(out, n, "%s", d);
	else if (x && x[0] == '/')
		len = snprintf(out, n, "%s/berth-cli", x);
	else
		len = snprintf(out, n, "/tmp/berth-cli-%u", (unsigned)getuid());
	if (len >= (int)n)
		return -1;
	if (mkdir(out, 0700) < 0 && errno != EEXIST)
		return -1;
	if (lstat(out, &st) < 0 || !S_ISDIR(st.st_mode) || st.st_uid != getuid() || (st.st_mode & 077))
		return -1;
	return 0;
}

/* Where this caller's helper listens and locks, for the checkout given. */
static inline int helper_paths(const char *checkout, struct helper_paths *p)
{
	uint64_t key;
	if (snprintf(p->checkout, sizeof p->checkout, "%s", checkout) >= (int)sizeof p->checkout)
		return -1;
	if (helper_key(checkout, &key) < 0 || helper_dir(p->dir, sizeof p->dir) < 0)
		return -1;
	if (snprintf(p->sock, sizeof p->sock, "%s/%016llx.sock", p->dir, (unsigned long long)key) >= (int)sizeof p->sock)
		return -1;
	if (snprintf(p->lock, sizeof p->lock, "%s/%016llx.lock", p->dir, (unsigned long long)key) >= (int)sizeof p->lock)
		return -1;
	return 0;
}

/*
 * Start the next helper unless one is already alive (it holds the lock from
 * its start until it takes a command). The helper is detached: a session of
 * its own, stdio on /dev/null, working directory /, no other descriptors.
 * Called from a process that may have threads, so the children only make
 * async-signal-safe calls before exec; everything is prepared beforehand.
 * The forks are raw system calls: the process's fork handlers (Node's
 * among them) are not for a child that only execs.
 */
static inline void helper_spawn(const struct helper_paths *p, const char *node)
{
	char launch[PATH_MAX];
	int fd = open(p->lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);

	if (fd < 0)
		return;
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		close(fd);
		return;
	}
	close(fd);
	if (snprintf(launch, sizeof launch, "%s/dist/berth.cjs", p->checkout) >= (int)sizeof launch)
		return;
	char *const argv[] = { (char *)node, launch, (char *)"--cli-helper", (char *)p->dir, NULL };
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
		syscall(SYS_close_range, 3, ~0U, 0);
		execv(node, argv);
		_exit(127);
	}
	unsetenv("BERTH_CLI_SERVE");
	if (pid > 0)
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
}

#endif
