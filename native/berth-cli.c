/*
 * berth-cli: the berth command (bin/berth runs it). It hands the command to
 * a waiting helper process when there is one (see berth-cli-helper.h), and
 * otherwise runs the CLI in a fresh Node process, exactly as the helper
 * would have.
 *
 * With a helper, this process stays the caller's: it forwards the signals
 * it gets (Ctrl-C, a terminal resize, kill) to the helper, waits for the
 * exit status, puts the terminal and the stdio flags back as they were, and
 * exits with that status. If the helper dies of a signal this process had
 * forwarded, it dies of the same signal.
 */
#include "berth-cli-helper.h"
#include <signal.h>
#include <termios.h>

static pid_t helper_pid;
/* accepted: the helper has the command (until its status is in). Before
 * that, a Ctrl-Z waits in pending_stop and any other signal that ends a
 * process in pending_signal. */
static volatile sig_atomic_t accepted, pending_signal, pending_stop, fatal_signal;
/* The helper said its command reads the terminal on stdin. */
static volatile sig_atomic_t reads_terminal;

/* A background job on the terminal on stdin (not when stdin is no terminal, or not this process's). */
static int in_background(void)
{
	pid_t fg = tcgetpgrp(0);
	return fg >= 0 && fg != getpgrp();
}

/* Signals the helper gets in place of this process. */
static const int forwarded[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH, SIGALRM, SIGCONT, SIGTSTP };

static void on_signal(int sig)
{
	int saved = errno;
	if (!accepted) {
		/* Not the helper's command yet: an ending signal ends the wait and
		 * this process; a Ctrl-Z waits to see whose command it is. */
		if (sig == SIGTSTP)
			pending_stop = 1;
		else if (sig != SIGWINCH && sig != SIGCONT)
			pending_signal = sig;
	} else if (sig == SIGTSTP) {
		/* Ctrl-Z: the helper stops, and so does this process, like any job.
		 * The helper is in a session of its own, an orphaned process group
		 * that the kernel does not stop for SIGTSTP: it gets SIGSTOP. */
		kill(helper_pid, SIGSTOP);
		raise(SIGSTOP);
	} else if (sig == SIGCONT && reads_terminal && in_background()) {
		/* `bg`: a fresh process reading its terminal from the background
		 * is stopped by the kernel (SIGTTIN); the helper, outside the
		 * terminal's session, would not be. So it stays stopped, and this
		 * process stops as that one would have; `fg` resumes both. */
		raise(SIGTTIN);
	} else {
		kill(helper_pid, sig);
		if (sig != SIGWINCH && sig != SIGCONT)
			fatal_signal = sig;
	}
	errno = saved;
}

/* The caller's stdio as it was: a command may leave O_NONBLOCK on a shared
 * pipe, or a terminal in raw mode, if it ends abnormally. */
struct stdio_state {
	int flags[3];
	int is_tty[3];
	struct termios tio[3];
};

static void stdio_save(struct stdio_state *s)
{
	for (int i = 0; i < 3; i++) {
		s->flags[i] = fcntl(i, F_GETFL);
		s->is_tty[i] = tcgetattr(i, &s->tio[i]) == 0;
	}
}

/* Puts back the flags of the caller's descriptors (a shared pipe left
 * non-blocking would break the caller's next reader) and, if `terminal`,
 * the terminal modes. Those only after an abnormal end: a command that ends
 * normally has restored its own, and the terminal may meanwhile belong to
 * another program (`berth logs | less`). */
static void stdio_restore(const struct stdio_state *s, int terminal)
{
	sigset_t ttou, old;
	sigemptyset(&ttou);
	sigaddset(&ttou, SIGTTOU);
	/* A background job may not set its terminal: only what changed is set,
	 * and SIGTTOU is held so that it cannot stop this process. */
	sigprocmask(SIG_BLOCK, &ttou, &old);
	for (int i = 0; i < 3; i++) {
		struct termios now;
		if (terminal && s->is_tty[i] && tcgetattr(i, &now) == 0 && memcmp(&now, &s->tio[i], sizeof now) != 0)
			tcsetattr(i, TCSANOW, &s->tio[i]);
		if (s->flags[i] >= 0 && fcntl(i, F_GETFL) != s->flags[i])
			fcntl(i, F_SETFL, s->flags[i]);
	}
	sigprocmask(SIG_SETMASK, &old, NULL);
}

/* The request: length, argc, arguments, envc, environment, umask (native/PROTOCOL.md). */
static char *request(int argc, char **argv, size_t *len)
{
	extern char **environ;
	size_t n = 16;
	uint32_t count = 0;
	for (int i = 1; i < argc; i++)
		n += strlen(argv[i]) + 1;
	for (char **e = environ; *e; e++, count++)
		n += strlen(*e) + 1;
	char *buf = malloc(n), *p = buf;
	if (!buf)
		return NULL;
	uint32_t word = (uint32_t)(n - 4);
	memcpy(p, &word, 4), p += 4;
	word = (uint32_t)(argc - 1);
	memcpy(p, &word, 4), p += 4;
	for (int i = 1; i < argc; i++)
		p = stpcpy(p, argv[i]) + 1;
	memcpy(p, &count, 4), p += 4;
	for (char **e = environ; *e; e++)
		p = stpcpy(p, *e) + 1;
	mode_t mask = umask(0);
	umask(mask);
	word = mask;
	memcpy(p, &word, 4);
	*len = n;
	return buf;
}

static int send_request(int sock, int argc, char **argv)
{
	size_t len = 0;
	char *buf = request(argc, argv, &len);
	int cwd = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
	int fds[4] = { 0, 1, 2, cwd };
	union {
		char buf[CMSG_SPACE(sizeof fds)];
		struct cmsghdr align;
	} control;
	struct iovec iov = { buf, len };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf, .msg_controllen = sizeof control.buf };
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	int ok = buf && cwd >= 0;

	if (ok) {
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof fds);
		memcpy(CMSG_DATA(c), fds, sizeof fds);
		ssize_t sent = sendmsg(sock, &msg, MSG_NOSIGNAL);
		ok = sent > 0;
		for (size_t off = ok ? (size_t)sent : len; off < len;) {
			ssize_t w = send(sock, buf + off, len - off, MSG_NOSIGNAL);
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0) {
				ok = 0;
				break;
			}
			off += (size_t)w;
		}
	}
	free(buf);
	if (cwd >= 0)
		close(cwd);
	return ok ? 0 : -1;
}

static ssize_t read_full(int fd, void *buf, size_t n)
{
	size_t got = 0;
	while (got < n) {
		ssize_t r = read(fd, (char *)buf + got, n - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	return (ssize_t)got;
}

/* One disposition for every forwarded signal: on_signal, or SIG_DFL when
 * they are this process's own again. */
static void set_forwarded(void (*handler)(int))
{
	struct sigaction sa = { .sa_handler = handler };
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < sizeof forwarded / sizeof forwarded[0]; i++)
		sigaction(forwarded[i], &sa, NULL);
}

/* The helper did not take the command: this process's signals are its own
 * again (one that came meanwhile acts now), and it runs the command itself. */
static int give_up(int sock)
{
	sigset_t set, old;

	sigemptyset(&set);
	for (size_t i = 0; i < sizeof forwarded / sizeof forwarded[0]; i++)
		sigaddset(&set, forwarded[i]);
	sigprocmask(SIG_BLOCK, &set, &old);
	close(sock);
	set_forwarded(SIG_DFL);
	int sig = pending_signal, stop = pending_stop;
	pending_signal = pending_stop = 0;
	sigprocmask(SIG_SETMASK, &old, NULL);
	if (sig)
		raise(sig);
	if (stop)
		raise(SIGTSTP);
	return -1;
}


/* Run the command in the helper. Returns -1 when no helper took it (nothing
 * has happened yet: the caller runs it itself), else the exit status. */
static int run_in_helper(const struct helper_paths *p, int argc, char **argv)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	struct ucred cred;
	socklen_t credlen = sizeof cred;
	struct stdio_state saved;
	unsigned char msg[2];

	/* Closed stdio cannot be handed over; the fresh process deals with it. */
	for (int i = 0; i < 3; i++)
		if (fcntl(i, F_GETFD) < 0)
			return -1;
	/* A job started in the background on its terminal is stopped if it
	 * reads it (SIGTTIN); the helper, outside the terminal's session, would
	 * not be. Such a command runs in a fresh process. */
	if (in_background())
		return -1;
	int sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (sock < 0)
		return -1;
	memcpy(addr.sun_path, p->sock, sizeof addr.sun_path);
	if (connect(sock, (struct sockaddr *)&addr, sizeof addr) < 0 ||
	    getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &cred, &credlen) < 0 || cred.uid != getuid() ||
	    !helper_same_world(cred.pid)) {
		close(sock);
		return -1;
	}
	helper_pid = cred.pid;
	stdio_save(&saved);
	/* From here a signal is this process's own until the helper accepts
	 * (the wait for that can be interrupted), then the helper's. */
	set_forwarded(on_signal);
	if (send_request(sock, argc, argv) < 0)
		return give_up(sock);
	for (;;) {
		ssize_t n = read(sock, msg, 1);
		if (n == 1 && msg[0] == HELPER_ACCEPTED)
			break;
		if (n < 0 && errno == EINTR && !pending_signal)
			continue;
		/* EOF (the helper would not take it) or a signal to act on: if the
		 * helper did take it meanwhile, it sees the hang-up and ends. */
		return give_up(sock);
	}
	accepted = 1;
	if (pending_signal)
		on_signal(pending_signal);
	if (pending_stop)
		on_signal(SIGTSTP);

	int normal = 0;
	for (;;) {
		if (read_full(sock, msg, 1) != 1)
			break;
		if (msg[0] == HELPER_READS_TERMINAL) {
			reads_terminal = 1;
			continue;
		}
		normal = msg[0] == HELPER_STATUS && read_full(sock, msg + 1, 1) == 1;
		break;
	}
	/* The status is in: signals from now on are this process's own again. */
	accepted = 0;
	set_forwarded(SIG_DFL);
	stdio_restore(&saved, !normal);
	if (normal)
		return msg[1];
	if (fatal_signal)
		raise(fatal_signal); /* the helper died of the signal it was given: so does the caller */
	fprintf(stderr, "berth: the CLI's helper process ended before the command did\n");
	return 125;
}

/* CHECKOUT/native/build/berth-cli, from /proc/self/exe or else argv[0]. */
static int find_checkout(const char *argv0, char *out, size_t n)
{
	if (helper_checkout("/proc/self/exe", out, n) == 0)
		return 0;
	return strchr(argv0, '/') ? helper_checkout(argv0, out, n) : -1;
}

int main(int argc, char **argv)
{
	char checkout[PATH_MAX], node[PATH_MAX], launch[PATH_MAX];
	struct helper_paths paths;

	if (find_checkout(argv[0], checkout, sizeof checkout) < 0) {
		fprintf(stderr, "berth: cannot tell where the berth checkout is (from /proc/self/exe or %s)\n", argv[0]);
		return 125;
	}
	if (helper_wanted() && helper_paths(checkout, &paths) == 0) {
		int status = run_in_helper(&paths, argc, argv);
		if (status >= 0)
			return status;
	}
	if (snprintf(node, sizeof node, "%s/node_modules/.bin/node", checkout) >= (int)sizeof node ||
	    snprintf(launch, sizeof launch, "%s/dist/berth.cjs", checkout) >= (int)sizeof launch)
		return 125;
	char **args = calloc((size_t)argc + 2, sizeof *args);
	if (!args)
		return 125;
	args[0] = node;
	args[1] = launch;
	for (int i = 1; i < argc; i++)
		args[i + 1] = argv[i];
	execv(node, args);
	fprintf(stderr, "berth: cannot run %s: %s\n", node, strerror(errno));
	return 125;
}
