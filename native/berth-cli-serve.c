/*
 * berth-cli-serve.so: the waiting half of the CLI's helper process (see
 * berth-cli-helper.h). src/cli/launch.ts loads it with process.dlopen()
 * once Node is up and the CLI's code is read; its constructor blocks until
 * a command arrives, then makes this process the caller's:
 *
 *   - the caller's stdin, stdout and stderr become fds 0, 1 and 2;
 *   - its working directory, umask and environment (exactly: order and
 *     duplicates kept) replace this process's;
 *   - BERTH_CLI_ARGV_FD names a memfd with the arguments, NUL-separated;
 *   - BERTH_CLI_STATUS_FD names the connection, where berth-exit.so writes
 *     the exit status (or, for an exit that does not go through it, the
 *     exit handler registered here);
 *   - berth-cli-watch, started with the helper, now watches the
 *     connection: if the client is gone before the status (killed with
 *     SIGKILL, which it cannot pass on), this process is killed the same
 *     way, as a fresh process running the command would have been. Closing
 *     this process's end of the pair to it (watch_fd) stands it down, which
 *     both exits do before they send the status.
 *
 * and returns, for the CLI to run. Only with BERTH_CLI_SERVE=1 in the
 * environment does loading do anything. A helper that waits longer than
 * BERTH_CLI_HELPER_IDLE seconds (default 300), whose socket is removed, or
 * whose CLI files change under it, ends without serving.
 */
#include "berth-cli-helper.h"
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <time.h>

/* Longest a client may take to send its request. */
#define REQUEST_MS 2000

struct request {
	int fds[4]; /* stdin, stdout, stderr, working directory */
	char *data;
	size_t len;
};

static void close_fds(struct request *r)
{
	for (int i = 0; i < 4; i++)
		if (r->fds[i] >= 0)
			close(r->fds[i]);
}

static long now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000L + t.tv_nsec / 1000000;
}

/* Receives into buf[0..n) before the deadline; descriptors that come with
 * the first bytes go to r->fds (any others are closed). 0 when complete. */
static int receive(int conn, char *buf, size_t n, struct request *r, long deadline)
{
	size_t got = 0;
	while (got < n) {
		long left = deadline - now_ms();
		struct pollfd pfd = { conn, POLLIN, 0 };
		if (left <= 0 || poll(&pfd, 1, (int)left) != 1)
			return -1;
		union {
			char buf[CMSG_SPACE(sizeof(int) * 8)];
			struct cmsghdr align;
		} control;
		struct iovec iov = { buf + got, n - got };
		struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf, .msg_controllen = sizeof control.buf };
		ssize_t k = recvmsg(conn, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
		if (k < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); k >= 0 && c; c = CMSG_NXTHDR(&msg, c)) {
			if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
				continue;
			size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			int fds[8];
			memcpy(fds, CMSG_DATA(c), count * sizeof(int));
			for (size_t i = 0; i < count; i++) {
				if (got == 0 && count == 4 && r->fds[i] < 0)
					r->fds[i] = fds[i];
				else
					close(fds[i]);
			}
		}
		if (k <= 0 || (msg.msg_flags & MSG_CTRUNC))
			return -1;
		got += (size_t)k;
	}
	return 0;
}

/* Reads one whole request within REQUEST_MS; 0 when it is complete and carries the four descriptors. */
static int read_request(int conn, struct request *r)
{
	long deadline = now_ms() + REQUEST_MS;
	uint32_t len;

	if (receive(conn, (char *)&len, sizeof len, r, deadline) < 0 || r->fds[3] < 0)
		return -1;
	if (len < 12 || len > 64u << 20 || !(r->data = malloc(len)))
		return -1;
	r->len = len;
	return receive(conn, r->data, len, r, deadline);
}

/* The strings of one counted list in the request, from *pos; -1 when it overruns. */
static int walk_strings(const struct request *r, size_t *pos, uint32_t *count)
{
	if (*pos + 4 > r->len)
		return -1;
	memcpy(count, r->data + *pos, 4);
	*pos += 4;
	for (uint32_t i = 0; i < *count; i++) {
		char *end = memchr(r->data + *pos, 0, r->len - *pos);
		if (!end)
			return -1;
		*pos = (size_t)(end - r->data) + 1;
	}
	return 0;
}

static int status_fd = -1, watch_fd = -1;

/* A command that ends through a plain exit() (not berth-exit.so, which
 * _exits) still reports its status. */
static void report_exit(int status, void *unused)
{
	(void)unused;
	unsigned char msg[2] = { HELPER_STATUS, (unsigned char)status };
	if (watch_fd >= 0)
		close(watch_fd);
	if (status_fd >= 0)
		(void)!write(status_fd, msg, 2);
}

/* Makes this process the caller's (see the top); -1 leaves it untouched. */
static int adopt(struct request *r, int conn)
{
	static char argv_var[64], status_var[64];
	size_t pos = 0, argv_at = 4, env_at;
	uint32_t argc, envc, mask;

	if (walk_strings(r, &pos, &argc) < 0)
		return -1;
	env_at = pos + 4;
	if (walk_strings(r, &pos, &envc) < 0 || pos + 4 != r->len)
		return -1;
	memcpy(&mask, r->data + pos, 4);
	int argfd = memfd_create("berth-argv", MFD_CLOEXEC);
	size_t arglen = env_at - 4 - argv_at;
	/* The helper's two variables first (getenv finds the first of a
	 * name), then the caller's environment exactly as it is. Its strings
	 * stay where they are: the request's buffer is never freed. */
	char **env = calloc((size_t)envc + 3, sizeof *env);
	if (argfd < 0 || !env || write(argfd, r->data + argv_at, arglen) != (ssize_t)arglen || lseek(argfd, 0, SEEK_SET) != 0 ||
	    fchdir(r->fds[3]) < 0) {
		if (argfd >= 0)
			close(argfd);
		free(env);
		return -1;
	}
	snprintf(argv_var, sizeof argv_var, "BERTH_CLI_ARGV_FD=%d", argfd);
	snprintf(status_var, sizeof status_var, "BERTH_CLI_STATUS_FD=%d", conn);
	env[0] = argv_var;
	env[1] = status_var;
	char *s = r->data + env_at;
	for (uint32_t i = 0; i < envc; i++, s += strlen(s) + 1)
		env[2 + i] = s;
	for (int i = 0; i < 3; i++)
		dup2(r->fds[i], i);
	close_fds(r);
	umask(mask);
	extern char **environ;
	environ = env;
	status_fd = conn;
	on_exit(report_exit, NULL);
	return 0;
}

/* Starts berth-cli-watch, with one end of a socket pair as its fd 3; the
 * other end (this process's) in watch_fd. */
static int start_watch(const char *checkout)
{
	char path[PATH_MAX], pid[16];
	int pair[2];

	if (snprintf(path, sizeof path, "%s/native/build/berth-cli-watch", checkout) >= (int)sizeof path ||
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) < 0)
		return -1;
	snprintf(pid, sizeof pid, "%d", (int)getpid());
	char *const argv[] = { path, pid, NULL };
	pid_t child = (pid_t)syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
	if (child == 0) {
		/* In the child of a process with threads: system calls only. */
		if (dup2(pair[1], 3) < 0 || fcntl(3, F_SETFD, 0) < 0) /* dup2 onto itself keeps close-on-exec */
			_exit(127);
		helper_close_from(4, -1);
		execv(path, argv);
		_exit(127);
	}
	close(pair[1]);
	if (child < 0) {
		close(pair[0]);
		return -1;
	}
	watch_fd = pair[0];
	return 0;
}

/* Hands the command's connection to berth-cli-watch. */
static int watch(int conn)
{
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} control;
	struct iovec iov = { (char[]){ 'C' }, 1 };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf, .msg_controllen = sizeof control.buf };
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &conn, sizeof conn);
	return sendmsg(watch_fd, &msg, MSG_NOSIGNAL) == 1 ? 0 : -1;
}

static int same_file(const char *path, const struct stat *was)
{
	struct stat st;
	return stat(path, &st) == 0 && st.st_dev == was->st_dev && st.st_ino == was->st_ino;
}

/* A waiting helper told to end (kill, Ctrl-C in a terminal that started it
 * by hand) takes its socket and lock file with it. */
static struct helper_paths *waiting_paths;
static struct stat waiting_sock;

static void end_waiting(int sig)
{
	(void)sig;
	if (same_file(waiting_paths->sock, &waiting_sock))
		unlink(waiting_paths->sock);
	unlink(waiting_paths->lock);
	_exit(0);
}

static void on_ending_signals(void (*handler)(int))
{
	static const int ending[] = { SIGTERM, SIGINT, SIGHUP };
	struct sigaction sa = { .sa_handler = handler };
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < sizeof ending / sizeof ending[0]; i++)
		sigaction(ending[i], &sa, NULL);
}

static void serve(void)
{
	struct helper_paths p;
	char tmp[sizeof p.sock + 16];
	struct stat sock_st;
	uint64_t now;
	const char *idle_env = getenv("BERTH_CLI_HELPER_IDLE");
	long idle_limit = idle_env ? atol(idle_env) : HELPER_IDLE_DEFAULT;

	if (helper_paths_of_library((void *)serve, &p) < 0)
		_exit(0);
	int lock = helper_lock(p.lock);
	if (lock < 0)
		_exit(0); /* another helper is alive */
	char pid[16];
	int pidlen = snprintf(pid, sizeof pid, "%d\n", (int)getpid());
	if (ftruncate(lock, 0) < 0 || pwrite(lock, pid, (size_t)pidlen, 0) != pidlen || start_watch(p.checkout) < 0)
		_exit(0);

	int listener = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	snprintf(tmp, sizeof tmp, "%s.%d", p.sock, (int)getpid());
	if (strlen(tmp) >= sizeof addr.sun_path)
		_exit(0);
	strcpy(addr.sun_path, tmp);
	unlink(tmp);
	/* Bound under a private name and renamed: a caller never meets a socket that is not listening yet. */
	if (listener < 0 || bind(listener, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(listener, 64) < 0 ||
	    rename(tmp, p.sock) < 0 || stat(p.sock, &sock_st) < 0) {
		unlink(tmp);
		_exit(0);
	}

	waiting_paths = &p;
	waiting_sock = sock_st;
	on_ending_signals(end_waiting);
	struct pollfd pfd = { listener, POLLIN, 0 };
	for (long idle = 0;;) {
		int ready = poll(&pfd, 1, 1000);
		if (ready < 0 && errno == EINTR)
			continue;
		if (ready == 0) {
			if (!same_file(p.sock, &sock_st))
				_exit(0); /* replaced or removed: not ours to clean up */
			/* A rebuilt CLI retires this helper at once, as does the idle limit. */
			if (++idle >= idle_limit || helper_key(p.checkout, &now) < 0 || now != p.key)
				break;
			continue;
		}
		int conn = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
		if (conn < 0) {
			poll(NULL, 0, 100); /* out of descriptors or memory: not a busy loop */
			continue;
		}
		struct ucred cred;
		socklen_t credlen = sizeof cred;
		struct request r = { .fds = { -1, -1, -1, -1 } };
		if (getsockopt(conn, SOL_SOCKET, SO_PEERCRED, &cred, &credlen) == 0 && cred.uid == getuid() &&
		    helper_same_world(cred.pid) && read_request(conn, &r) == 0) {
			/* From here on the slot is free: the next helper may start;
			 * and signals are the command's, as in a fresh process. */
			on_ending_signals(SIG_DFL);
			if (same_file(p.sock, &sock_st))
				unlink(p.sock);
			close(listener);
			close(lock);
			if (adopt(&r, conn) == 0 && watch(conn) == 0 && send(conn, (char[]){ HELPER_ACCEPTED }, 1, MSG_NOSIGNAL) == 1)
				return;
			_exit(0);
		}
		close_fds(&r);
		free(r.data);
		close(conn);
	}
	if (same_file(p.sock, &sock_st))
		unlink(p.sock);
	/* Still held: a process that opened this file meanwhile finds it gone once it has the lock (helper_lock). */
	unlink(p.lock);
	_exit(0);
}

__attribute__((constructor)) static void berth_cli_serve(void)
{
	if (!getenv("BERTH_CLI_SERVE"))
		return;
	unsetenv("BERTH_CLI_SERVE");
	serve();
}
