/*
 * berth-cli-watch: the watch a CLI helper (berth-cli-serve.c) keeps on its
 * client. The helper starts it as it starts itself, with fd 3 one end of a
 * socket pair and its own pid as the argument.
 *
 * It waits for the connection of the command the helper takes (sent over
 * the pair with SCM_RIGHTS), then for whichever comes first:
 *   - the pair closing: the command is over (the helper closes its end
 *     before it sends the status), or the helper is gone. Nothing to do.
 *   - the client hanging up: it died without passing a signal on (SIGKILL).
 *     The helper is killed with SIGKILL, as the command's own process would
 *     have been. This works on a stopped helper too (Ctrl-Z, then kill -9),
 *     which a thread of the helper could not do.
 * It ends with the helper in any case (PR_SET_PDEATHSIG).
 */
#define _GNU_SOURCE
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#define PAIR 3

int main(int argc, char **argv)
{
	pid_t helper = argc == 2 ? (pid_t)atoi(argv[1]) : 0;
	char byte;
	int conn = -1;
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} control;
	struct iovec iov = { &byte, 1 };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf, .msg_controllen = sizeof control.buf };

	if (helper <= 0 || prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != helper)
		return 1;
	if (recvmsg(PAIR, &msg, MSG_CMSG_CLOEXEC) != 1)
		return 0; /* the helper ended without a command */
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	if (!c || c->cmsg_type != SCM_RIGHTS || c->cmsg_len != CMSG_LEN(sizeof(int)))
		return 1;
	memcpy(&conn, CMSG_DATA(c), sizeof conn);

	struct pollfd pfd[2] = { { PAIR, POLLIN, 0 }, { conn, POLLRDHUP, 0 } };
	for (;;) {
		if (poll(pfd, 2, -1) < 0)
			continue;
		if (pfd[0].revents)
			return 0;
		if (pfd[1].revents) {
			if (getppid() == helper)
				kill(helper, SIGKILL);
			return 0;
		}
	}
}
