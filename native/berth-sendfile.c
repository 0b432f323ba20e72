/*
 * berth-sendfile FILE OFFSET LENGTH
 *
 * Send LENGTH bytes of FILE, starting at OFFSET, to standard output (the
 * client's socket, handed over by `berth registry serve` after it wrote the
 * response headers) with sendfile(2): the kernel moves the bytes from the
 * page cache to the socket without a copy through user space. The socket is
 * non-blocking (it is shared with Node.js), so a full send buffer is waited
 * out with poll(2). Exit status 0 only when every byte was sent.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/sendfile.h>
#include <sys/types.h>
#include <unistd.h>

/* A client that stops reading for this long is given up on. */
#define STALL_MS (5 * 60 * 1000)
#define MAX_CALL (1L << 30)

static long long parse(const char *s, const char *what) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v < 0) {
        fprintf(stderr, "berth-sendfile: invalid %s: %s\n", what, s);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: berth-sendfile FILE OFFSET LENGTH\n");
        return 2;
    }
    off_t off = (off_t)parse(argv[2], "offset");
    long long left = parse(argv[3], "length");
    int fd = open(argv[1], O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        perror("berth-sendfile: open");
        return 1;
    }
    while (left > 0) {
        ssize_t n = sendfile(STDOUT_FILENO, fd, &off, left > MAX_CALL ? MAX_CALL : (size_t)left);
        if (n > 0) {
            left -= n;
            continue;
        }
        if (n == 0) {
            fprintf(stderr, "berth-sendfile: %s ended %lld bytes early\n", argv[1], left);
            return 1;
        }
        if (errno == EINTR) continue;
        if (errno == EAGAIN) {
            struct pollfd p = {.fd = STDOUT_FILENO, .events = POLLOUT};
            int r = poll(&p, 1, STALL_MS);
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0 || (p.revents & (POLLERR | POLLHUP | POLLNVAL))) return 1;
            continue;
        }
        if (errno != EPIPE && errno != ECONNRESET) perror("berth-sendfile: sendfile");
        return 1;
    }
    return 0;
}
