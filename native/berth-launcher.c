/*
 * berth-launcher: starts berth-monitor processes on berthd's behalf.
 *
 * Forking a large Node.js process blocks its event loop for several
 * milliseconds, on the path of every container start. berthd instead keeps
 * this small process and asks it to start monitors. Each monitor is
 * double-forked, so it is no child of the launcher (or of berthd) and
 * outlives both.
 *
 * It also runs berthd's short network helpers (berth-netns) for the same
 * reason: one fork of a small process instead of one of Node.js.
 *
 * Protocol on stdin/stdout (one request at a time):
 *   request:  u32 big-endian length, then an argv, each argument
 *             NUL-terminated. Either the monitor's argv (program path
 *             first), or "--run" followed by a helper's argv.
 *   reply to a monitor start: one line: "ready\n" once the monitor's
 *             control socket is up, or "error: <text>\n"
 *   reply to --run: "exit <status> <n>\n" and then n bytes: what the
 *             helper wrote to stdout and stderr (at most 64 KiB kept).
 *             Status 127: it could not be executed; 128+N: killed by N.
 * EOF on stdin ends the launcher.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_REQ (1 << 20)
#define MAX_ARGS 256

static int read_full(int fd, void *buf, size_t n)
{
	size_t off = 0;
	while (off < n) {
		ssize_t r = read(fd, (char *)buf + off, n - off);
		if (r == 0)
			return 0;
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		off += (size_t)r;
	}
	return 1;
}

/* Everything to stdout (berthd), or the launcher ends: berthd has gone. */
static void write_all(const char *s, size_t n)
{
	while (n > 0) {
		ssize_t w = write(1, s, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			exit(1);
		}
		s += w;
		n -= (size_t)w;
	}
}

static void reply(const char *s)
{
	write_all(s, strlen(s));
}

/* A pipe whose write end a forked child gets; -1 (nothing left open) on failure. */
static pid_t fork_piped(int p[2])
{
	if (pipe2(p, O_CLOEXEC) < 0)
		return -1;
	pid_t child = fork();
	if (child < 0) {
		close(p[0]);
		close(p[1]);
	}
	return child;
}

/* In a child: take these stdio descriptors, unblock signals and exec;
 * on failure say so on `out` (prefixed as the reply expects) and end. */
static void exec_child(char **argv, int in, int out, int err, const char *prefix)
{
	dup2(in, 0);
	dup2(out, 1);
	dup2(err, 2);
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	execv(argv[0], argv);
	dprintf(out, "%sexec %s: %s\n", prefix, argv[0], strerror(errno));
	_exit(127);
}

/* Start one monitor and relay its first line ("ready" or "error: …"). */
static void launch(char **argv)
{
	int p[2];
	pid_t child = fork_piped(p);
	if (child < 0) {
		reply("error: pipe or fork failed\n");
		return;
	}
	if (child == 0) {
		/* The intermediate child: fork the monitor and leave at once, so
		 * the monitor is reparented away from us. */
		pid_t g = fork();
		if (g != 0)
			_exit(g < 0 ? 1 : 0);
		setsid();
		int devnull = open("/dev/null", O_RDWR);
		exec_child(argv, devnull, p[1], devnull, "error: ");
	}
	close(p[1]);
	int st;
	while (waitpid(child, &st, 0) < 0 && errno == EINTR) {
	}
	char line[4096];
	size_t n = 0;
	for (;;) {
		ssize_t r = read(p[0], line + n, sizeof line - 1 - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		n += (size_t)r;
		if (memchr(line, '\n', n) || n == sizeof line - 1)
			break;
	}
	close(p[0]);
	line[n] = 0;
	char *nl = strchr(line, '\n');
	if (nl)
		nl[1] = 0;
	if (n == 0)
		reply("error: the monitor exited before it was ready\n");
	else if (!nl)
		reply("error: the monitor said something unexpected\n");
	else
		reply(line);
}

/* Run a helper to its end, stdin from /dev/null, and report its status and output. */
static void run_helper(char **argv)
{
	static char out[64 * 1024];
	int p[2];
	pid_t child = fork_piped(p);
	if (child < 0) {
		reply("exit 127 20\npipe or fork failed\n");
		return;
	}
	if (child == 0)
		exec_child(argv, open("/dev/null", O_RDONLY), p[1], p[1], "");
	close(p[1]);
	size_t n = 0;
	for (;;) {
		char drop[4096];
		char *dst = n < sizeof out ? out + n : drop;
		size_t room = n < sizeof out ? sizeof out - n : sizeof drop;
		ssize_t r = read(p[0], dst, room);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		if (dst == out + n)
			n += (size_t)r;
	}
	close(p[0]);
	int st = 0;
	while (waitpid(child, &st, 0) < 0 && errno == EINTR) {
	}
	int code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
	char head[64];
	snprintf(head, sizeof head, "exit %d %zu\n", code, n);
	reply(head);
	write_all(out, n);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	static char buf[MAX_REQ + 1];
	for (;;) {
		uint8_t hdr[4];
		int r = read_full(0, hdr, 4);
		if (r <= 0)
			return 0;
		uint32_t len = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | hdr[3];
		if (len == 0 || len > MAX_REQ)
			return 2;
		if (read_full(0, buf, len) <= 0)
			return 2;
		buf[len] = 0;
		char *argv[MAX_ARGS + 1];
		int argc = 0;
		for (size_t off = 0; off < len && argc < MAX_ARGS; off += strlen(buf + off) + 1)
			argv[argc++] = buf + off;
		argv[argc] = NULL;
		if (argc > 1 && strcmp(argv[0], "--run") == 0)
			run_helper(argv + 1);
		else
			launch(argv);
	}
}
