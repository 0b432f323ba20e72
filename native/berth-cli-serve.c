/*
 * berth-cli-serve.so: the waiting half of the CLI's helper process (see
 * berth-cli-helper.h). src/cli/launch.ts loads it with process.dlopen()
 * once Node is up and the CLI's code is read; its constructor blocks until
 * a command arrives, then makes this process the caller's:
 *
 *   - the caller's stdin, stdout and stderr become fds 0, 1 and 2;
 *   - its working directory, umask and environment replace this process's;
 *   - BERTH_CLI_ARGV_FD names a memfd with the arguments, NUL-separated;
 *   - BERTH_CLI_STATUS_FD names the connection, where berth-exit.so writes
 *     the exit status;
 *   - a thread watches the connection: if the client is gone before the
 *     status (killed with SIGKILL, which it cannot pass on), this process
 *     is killed the same way, as a fresh process running the command would
 *     have been. berth-exit.so stands it down first, through the eventfd
 *     named by BERTH_CLI_DISARM_FD. (Linked with -z nodelete: Node unloads
 *     a library that is not an addon, and the thread runs in this one.)
 *
 * and returns, for the CLI to run. Only with BERTH_CLI_SERVE=1 in the
 * environment does loading do anything. A helper that waits longer than
 * BERTH_CLI_HELPER_IDLE seconds (default 300), whose socket is removed, or
 * whose CLI files change under it, ends without serving.
 */
#include "berth-cli-helper.h"
#include <dlfcn.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/mman.h>

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

/* Reads one whole request within two seconds; 0 when it is complete and well formed. */
static int read_request(int conn, struct request *r)
{
	union {
		char buf[CMSG_SPACE(sizeof r->fds)];
		struct cmsghdr align;
	} control;
	uint32_t len;
	struct iovec iov = { &len, sizeof len };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf, .msg_controllen = sizeof control.buf };
	struct pollfd pfd = { conn, POLLIN, 0 };

	for (int i = 0; i < 4; i++)
		r->fds[i] = -1;
	r->data = NULL;
	if (poll(&pfd, 1, 2000) != 1 || recvmsg(conn, &msg, MSG_CMSG_CLOEXEC | MSG_WAITALL) != sizeof len)
		return -1;
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	if (!c || c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS || c->cmsg_len != CMSG_LEN(sizeof r->fds))
		return -1;
	memcpy(r->fds, CMSG_DATA(c), sizeof r->fds);
	if (len < 12 || len > 64u << 20 || !(r->data = malloc(len)))
		return -1;
	for (size_t got = 0; got < len;) {
		if (poll(&pfd, 1, 2000) != 1)
			return -1;
		ssize_t n = read(conn, r->data + got, len - got);
		if (n <= 0)
			return -1;
		got += (size_t)n;
	}
	r->len = len;
	return 0;
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

/* Makes this process the caller's (see the top); -1 leaves it untouched. */
static int adopt(struct request *r, int conn)
{
	size_t pos = 0, argv_at, env_at;
	uint32_t argc, envc, mask;

	argv_at = 4;
	if (walk_strings(r, &pos, &argc) < 0)
		return -1;
	env_at = pos + 4;
	if (walk_strings(r, &pos, &envc) < 0 || pos + 4 != r->len)
		return -1;
	memcpy(&mask, r->data + pos, 4);

	int argfd = memfd_create("berth-argv", MFD_CLOEXEC);
	size_t arglen = env_at - 4 - argv_at;
	if (argfd < 0 || write(argfd, r->data + argv_at, arglen) != (ssize_t)arglen || lseek(argfd, 0, SEEK_SET) != 0) {
		if (argfd >= 0)
			close(argfd);
		return -1;
	}
	if (fchdir(r->fds[3]) < 0) {
		close(argfd);
		return -1;
	}
	for (int i = 0; i < 3; i++)
		dup2(r->fds[i], i);
	close_fds(r);
	umask(mask);
	clearenv();
	char *s = r->data + env_at;
	for (uint32_t i = 0; i < envc; i++) {
		size_t n = strlen(s);
		/* putenv keeps the pointer: the request's buffer is never freed. */
		if (strchr(s, '='))
			putenv(s);
		s += n + 1;
	}
	char num[16];
	snprintf(num, sizeof num, "%d", argfd);
	setenv("BERTH_CLI_ARGV_FD", num, 1);
	snprintf(num, sizeof num, "%d", conn);
	setenv("BERTH_CLI_STATUS_FD", num, 1);
	return 0;
}

struct watch {
	int conn, disarm;
};

static void *watch_client(void *arg)
{
	struct watch *w = arg;
	struct pollfd pfd[2] = { { w->disarm, POLLIN, 0 }, { w->conn, POLLRDHUP, 0 } };
	for (;;) {
		if (poll(pfd, 2, -1) < 0)
			continue;
		if (pfd[0].revents)
			return NULL;
		if (pfd[1].revents)
			kill(getpid(), SIGKILL);
	}
}

static int watch(int conn)
{
	static struct watch w;
	pthread_attr_t attr;
	pthread_t thread;
	char num[16];

	w.conn = conn;
	w.disarm = eventfd(0, EFD_CLOEXEC);
	if (w.disarm < 0 || pthread_attr_init(&attr) != 0 || pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED) != 0 ||
	    pthread_create(&thread, &attr, watch_client, &w) != 0)
		return -1;
	snprintf(num, sizeof num, "%d", w.disarm);
	return setenv("BERTH_CLI_DISARM_FD", num, 1);
}

static int same_file(const char *path, const struct stat *was)
{
	struct stat st;
	return stat(path, &st) == 0 && st.st_dev == was->st_dev && st.st_ino == was->st_ino &&
	       st.st_mtim.tv_sec == was->st_mtim.tv_sec && st.st_mtim.tv_nsec == was->st_mtim.tv_nsec;
}

static void serve(void)
{
	struct helper_paths p;
	Dl_info self;
	char so[PATH_MAX], checkout[PATH_MAX], tmp[sizeof p.sock + 16];
	struct stat sock_st;
	uint64_t key, now;
	const char *idle_env = getenv("BERTH_CLI_HELPER_IDLE");
	long idle_limit = idle_env ? atol(idle_env) : HELPER_IDLE_DEFAULT;

	/* CHECKOUT/native/build/berth-cli-serve.so */
	if (!dladdr((void *)serve, &self) || !realpath(self.dli_fname, so) || helper_strip(so, 3, checkout, sizeof checkout) < 0 ||
	    helper_paths(checkout, &p) < 0 || helper_key(checkout, &key) < 0)
		_exit(0);
	int lock = open(p.lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (lock < 0 || flock(lock, LOCK_EX | LOCK_NB) < 0)
		_exit(0); /* another helper is alive */
	char pid[16];
	int pidlen = snprintf(pid, sizeof pid, "%d\n", (int)getpid());
	if (ftruncate(lock, 0) < 0 || pwrite(lock, pid, (size_t)pidlen, 0) != pidlen)
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

	struct pollfd pfd = { listener, POLLIN, 0 };
	for (long idle = 0;;) {
		int ready = poll(&pfd, 1, 1000);
		if (ready < 0 && errno == EINTR)
			continue;
		if (ready == 0) {
			if (!same_file(p.sock, &sock_st))
				_exit(0); /* replaced or removed: not ours to clean up */
			/* A rebuilt CLI retires this helper at once, as does the idle limit. */
			if (++idle >= idle_limit || helper_key(checkout, &now) < 0 || now != key)
				break;
			continue;
		}
		int conn = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
		if (conn < 0)
			continue;
		struct ucred cred;
		socklen_t credlen = sizeof cred;
		struct request r = { .fds = { -1, -1, -1, -1 } };
		if (getsockopt(conn, SOL_SOCKET, SO_PEERCRED, &cred, &credlen) == 0 && cred.uid == getuid() &&
		    read_request(conn, &r) == 0) {
			/* From here on the slot is free: the next helper may start. */
			if (same_file(p.sock, &sock_st))
				unlink(p.sock);
			close(listener);
			close(lock);
			if (adopt(&r, conn) == 0 && watch(conn) == 0 && write(conn, (char[]){ HELPER_ACCEPTED }, 1) == 1)
				return;
			_exit(0);
		}
		close_fds(&r);
		free(r.data);
		close(conn);
	}
	if (same_file(p.sock, &sock_st))
		unlink(p.sock);
	unlink(p.lock); /* still held: nobody is between opening and locking it */
	_exit(0);
}

__attribute__((constructor)) static void berth_cli_serve(void)
{
	if (!getenv("BERTH_CLI_SERVE"))
		return;
	unsetenv("BERTH_CLI_SERVE");
	serve();
}
