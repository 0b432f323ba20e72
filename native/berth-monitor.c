/*
 * berth-monitor: the per-container supervisor.
 *
 * One of these runs for every container (and every detached exec). It starts
 * the OCI runtime, owns the container's stdio, writes the json-file log,
 * records the exit status in DIR/exit and outlives berthd. The wire protocol
 * and the life cycle are described in native/PROTOCOL.md.
 *
 * Design constraints that shape this file:
 *  - a few hundred KiB of RSS while idle: single thread, poll(2), static
 *    buffers that are only touched when used, no libraries beyond libc;
 *  - never block on a client: slow readers are buffered up to a limit and then
 *    dropped, because a stuck attach must not stall the container's output;
 *  - nothing of ours may leak into the container: every descriptor is
 *    close-on-exec except the three stdio descriptors handed to the runtime.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

/* Frame types; keep in step with src/runtime/monitor-protocol.ts. */
enum {
	F_STDOUT = 1,
	F_STDERR = 2,
	F_EXIT = 3,
	F_STARTED = 4,
	F_START_FAILED = 5,
	F_STATE = 6,
	F_CLEANED = 7,
	F_HELLO = 16,
	F_START = 17,
	F_STDIN = 18,
	F_STDIN_CLOSE = 19,
	F_RESIZE = 20,
	F_SHUTDOWN = 21,
};

#define CLIENT_OUT_LIMIT (1u << 20)  /* queued bytes before a client is dropped */
#define CLIENT_FRAME_LIMIT (1u << 20) /* largest frame a client may send */
#define STDIN_HIGH_WATER (1u << 20)  /* pause the sender past this much queued stdin */
#define LOG_LINE_MAX (16u * 1024)    /* partial line flushed as its own record */
#define HELD_LIMIT (1u << 20)        /* output held back while the runtime runs */
#define READ_CHUNK (32u * 1024)
#define MAX_CLIENTS 128
#define DRAIN_MS 200
#define LINGER_MS 5000
#define DELETE_TIMEOUT_MS 10000
#define CONSOLE_WAIT_MS 1000
#define EARLY_MAX 64
#define MSG_MAX 4096

enum state {
	ST_CREATED,  /* waiting for START */
	ST_STARTING, /* runtime child running */
	ST_RUNNING,  /* container pid known and alive */
	ST_DRAINING, /* container exited, reading what is left in the pipes */
	ST_CLEANUP,  /* `runtime delete` running */
	ST_EXITED,   /* EXIT sent, lingering for clients */
	ST_FAILED,   /* START_FAILED sent, lingering for clients */
};

/* ---------------------------------------------------------------- buffers */

struct buf {
	char *p;
	size_t off, len, cap; /* live data is p[off..len) */
};

static size_t buf_used(const struct buf *b) { return b->len - b->off; }

static void buf_reserve(struct buf *b, size_t extra)
{
	if (b->off > 0 && (b->off >= b->len || b->len + extra > b->cap)) {
		memmove(b->p, b->p + b->off, b->len - b->off);
		b->len -= b->off;
		b->off = 0;
	}
	if (b->len + extra <= b->cap)
		return;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < b->len + extra)
		cap *= 2;
	char *p = realloc(b->p, cap);
	if (!p)
		abort(); /* nothing sensible left to do without memory */
	b->p = p;
	b->cap = cap;
}

static void buf_append(struct buf *b, const void *d, size_t n)
{
	if (!n)
		return;
	buf_reserve(b, n);
	memcpy(b->p + b->len, d, n);
	b->len += n;
}

static void buf_puts(struct buf *b, const char *s) { buf_append(b, s, strlen(s)); }

static void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n <= 0)
		return;
	buf_reserve(b, (size_t)n + 1);
	va_start(ap, fmt);
	vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

static void buf_consume(struct buf *b, size_t n)
{
	b->off += n;
	if (b->off >= b->len)
		b->off = b->len = 0;
}

static void buf_free(struct buf *b)
{
	free(b->p);
	memset(b, 0, sizeof *b);
}

/* JSON string body. Escapes like the json-file logs people already parse:
 * HTML-significant characters and U+2028/9 as \u escapes, invalid UTF-8 as
 * U+FFFD, so any byte stream from a container becomes valid JSON. */
static void json_escape(struct buf *b, const unsigned char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	buf_reserve(b, n * 6 + 1);
	char *o = b->p + b->len;
	size_t i = 0;
	while (i < n) {
		unsigned c = s[i];
		if (c < 0x80) {
			switch (c) {
			case '"': *o++ = '\\'; *o++ = '"'; break;
			case '\\': *o++ = '\\'; *o++ = '\\'; break;
			case '\n': *o++ = '\\'; *o++ = 'n'; break;
			case '\r': *o++ = '\\'; *o++ = 'r'; break;
			case '\t': *o++ = '\\'; *o++ = 't'; break;
			default:
				if (c < 0x20 || c == '<' || c == '>' || c == '&') {
					memcpy(o, "\\u00", 4);
					o[4] = hex[c >> 4];
					o[5] = hex[c & 15];
					o += 6;
				} else {
					*o++ = (char)c;
				}
			}
			i++;
			continue;
		}
		size_t need;
		uint32_t cp, min;
		if ((c & 0xE0) == 0xC0) {
			need = 1; cp = c & 0x1F; min = 0x80;
		} else if ((c & 0xF0) == 0xE0) {
			need = 2; cp = c & 0x0F; min = 0x800;
		} else if ((c & 0xF8) == 0xF0) {
			need = 3; cp = c & 0x07; min = 0x10000;
		} else {
			goto bad;
		}
		if (i + need >= n)
			goto bad;
		for (size_t k = 1; k <= need; k++) {
			if ((s[i + k] & 0xC0) != 0x80)
				goto bad;
			cp = (cp << 6) | (s[i + k] & 0x3F);
		}
		if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
			goto bad;
		if (cp == 0x2028 || cp == 0x2029) {
			memcpy(o, cp == 0x2028 ? "\\u2028" : "\\u2029", 6);
			o += 6;
		} else {
			memcpy(o, s + i, need + 1);
			o += need + 1;
		}
		i += need + 1;
		continue;
bad:
		memcpy(o, "\\ufffd", 6);
		o += 6;
		i++;
	}
	b->len = (size_t)(o - b->p);
}

static void json_str(struct buf *b, const char *s)
{
	buf_puts(b, "\"");
	json_escape(b, (const unsigned char *)s, strlen(s));
	buf_puts(b, "\"");
}

/* Encodes a code point as UTF-8 into o; returns the byte count. */
static size_t utf8_put(char *o, uint32_t cp)
{
	if (cp < 0x80) { o[0] = (char)cp; return 1; }
	if (cp < 0x800) { o[0] = (char)(0xC0 | (cp >> 6)); o[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
	if (cp < 0x10000) {
		o[0] = (char)(0xE0 | (cp >> 12)); o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
		o[2] = (char)(0x80 | (cp & 0x3F)); return 3;
	}
	o[0] = (char)(0xF0 | (cp >> 18)); o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
	o[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); o[3] = (char)(0x80 | (cp & 0x3F));
	return 4;
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9') return c - '0';
	if (c >= 'a' && c <= 'f') return c - 'a' + 10;
	if (c >= 'A' && c <= 'F') return c - 'A' + 10;
	return -1;
}

static long hexn(const char *s, int n)
{
	long v = 0;
	for (int i = 0; i < n; i++) {
		int h = hexval((unsigned char)s[i]);
		if (h < 0)
			return -1;
		v = v * 16 + h;
	}
	return v;
}

/* Decodes a JSON or Go-quoted string body; s points just past the opening
 * quote. Returns the position after the closing quote, or NULL. */
static const char *unquote(const char *s, char *out, size_t cap)
{
	size_t o = 0;
	while (*s && *s != '"') {
		char tmp[4];
		size_t tn = 1;
		tmp[0] = *s;
		if (*s == '\\' && s[1]) {
			s++;
			switch (*s) {
			case 'n': tmp[0] = '\n'; break;
			case 't': tmp[0] = '\t'; break;
			case 'r': tmp[0] = '\r'; break;
			case 'b': tmp[0] = '\b'; break;
			case 'f': tmp[0] = '\f'; break;
			case 'v': tmp[0] = '\v'; break;
			case 'a': tmp[0] = '\a'; break;
			case 'x': {
				long v = hexn(s + 1, 2);
				if (v >= 0) { tmp[0] = (char)v; s += 2; }
				break;
			}
			case 'u':
			case 'U': {
				int len = *s == 'u' ? 4 : 8;
				long v = hexn(s + 1, len);
				if (v < 0)
					break;
				s += len;
				if (v >= 0xD800 && v <= 0xDBFF && s[1] == '\\' && s[2] == 'u') {
					long lo = hexn(s + 3, 4);
					if (lo >= 0xDC00 && lo <= 0xDFFF) {
						v = 0x10000 + ((v - 0xD800) << 10) + (lo - 0xDC00);
						s += 6;
					}
				}
				if (v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
					v = 0xFFFD;
				tn = utf8_put(tmp, (uint32_t)v);
				break;
			}
			default: tmp[0] = *s; break; /* \" \\ \/ */
			}
		}
		s++;
		if (o + tn < cap) {
			memcpy(out + o, tmp, tn);
			o += tn;
		}
	}
	if (cap)
		out[o < cap ? o : cap - 1] = 0;
	return *s == '"' ? s + 1 : NULL;
}

/* Position of the value of "key" in a flat JSON object, or NULL. Enough for
 * the few small objects clients send; not a general parser. */
static const char *json_value(const char *s, const char *key)
{
	size_t kl = strlen(key);
	for (const char *p = s; (p = strchr(p, '"')); p++) {
		if (strncmp(p + 1, key, kl) == 0 && p[kl + 1] == '"') {
			const char *q = p + kl + 2;
			while (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r')
				q++;
			if (*q != ':')
				continue;
			q++;
			while (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r')
				q++;
			return q;
		}
	}
	return NULL;
}

/* ------------------------------------------------------------------ state */

static struct {
	const char *id, *dir, *runtime, *runtime_root, *bundle, *log, *log_runtime;
	const char *overlay, *exec_process;
	int terminal, stdin_open;
} opt;

struct client {
	int fd;
	int sub_out, sub_err;
	int paused; /* not read from while stdin is backed up */
	int dead;
	struct buf in, out;
};

static struct client *clients[MAX_CLIENTS];
static int nclients;

static enum state state = ST_CREATED;
static int listen_fd = -1, sig_fd = -1, log_fd = -1;
static int out_fd = -1, err_fd = -1; /* read ends of the container's stdout/stderr pipes */
static int in_fd = -1;               /* write end of the container's stdin pipe */
static int rt_fd = -1;               /* runtime's own stdout/stderr in terminal mode */
static int console_listen_fd = -1, console_conn_fd = -1, master_fd = -1;
static pid_t runtime_pid = -1, container_pid = -1, delete_pid = -1;
static int stdin_close_pending, stdin_done;
static struct buf stdin_buf;
static struct buf held;     /* [stream][len:4][data] chunks read while starting */
static struct buf rt_text;  /* the runtime's output in terminal mode */
static int shutdown_requested;
static int overlay_mounted;
static char overlay_target[4096];
static int have_winsize;
static struct winsize winsize;
static int exit_code, exit_signal;
static struct timespec finished_at;
static char fail_msg[MSG_MAX];
static long long drain_deadline, delete_deadline, linger_deadline;
static char sock_path[4096], console_path[4096], pid_path[4096];
static char console_arg[128];   /* what the runtime is told, when DIR/console.sock is too long */
static struct { pid_t pid; int status; } early[EARLY_MAX];
static int nearly;
static char rbuf[READ_CHUNK];
static struct buf logb;
static struct buf partial[3]; /* per stream (1, 2): line not yet ended */

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* RFC 3339 with nanoseconds and trailing zeros trimmed, always UTC. */
static void fmt_time(char *out, size_t cap, const struct timespec *ts)
{
	struct tm tm;
	gmtime_r(&ts->tv_sec, &tm);
	/* Not strftime: it loads the local time zone, which is irrelevant here. */
	int w = snprintf(out, cap, "%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
			 tm.tm_hour, tm.tm_min, tm.tm_sec);
	size_t n = w < 0 ? 0 : (size_t)w < cap ? (size_t)w : cap - 1;
	long ns = ts->tv_nsec;
	if (ns > 0 && n + 11 < cap) {
		char frac[24];
		snprintf(frac, sizeof frac, ".%09ld", ns % 1000000000L);
		size_t fl = 10;
		while (frac[fl - 1] == '0')
			fl--;
		memcpy(out + n, frac, fl);
		n += fl;
	}
	if (n + 2 <= cap) {
		out[n++] = 'Z';
		out[n] = 0;
	}
}

static void set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	if (fl >= 0)
		fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static void xclose(int *fd)
{
	if (*fd >= 0) {
		close(*fd);
		*fd = -1;
	}
}

static int write_all(int fd, const void *d, size_t n)
{
	const char *p = d;
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static void path_join(char *out, size_t cap, const char *dir, const char *name)
{
	snprintf(out, cap, "%s/%s", dir, name);
}

/* -------------------------------------------------------------- clients */

static void drop_client(struct client *c)
{
	if (c->dead)
		return;
	close(c->fd);
	c->fd = -1;
	c->dead = 1;
}

static void client_send(struct client *c, int type, const void *data, size_t n)
{
	if (c->dead)
		return;
	unsigned char hdr[5] = {(unsigned char)type, (unsigned char)(n >> 24), (unsigned char)(n >> 16),
				(unsigned char)(n >> 8), (unsigned char)n};
	if (buf_used(&c->out) == 0) {
		struct iovec iov[2] = {{hdr, 5}, {(void *)data, n}};
		ssize_t w = writev(c->fd, iov, n ? 2 : 1);
		if (w < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
				drop_client(c);
				return;
			}
			w = 0;
		}
		if ((size_t)w == 5 + n)
			return;
		if (w < 5) {
			buf_append(&c->out, hdr + w, 5 - (size_t)w);
			buf_append(&c->out, data, n);
		} else {
			buf_append(&c->out, (const char *)data + (w - 5), n - (size_t)(w - 5));
		}
	} else {
		if (buf_used(&c->out) + 5 + n > CLIENT_OUT_LIMIT) {
			drop_client(c);
			return;
		}
		buf_append(&c->out, hdr, 5);
		buf_append(&c->out, data, n);
	}
	if (buf_used(&c->out) > CLIENT_OUT_LIMIT)
		drop_client(c);
}

static void client_flush(struct client *c)
{
	while (!c->dead && buf_used(&c->out)) {
		ssize_t w = write(c->fd, c->out.p + c->out.off, buf_used(&c->out));
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				drop_client(c);
			return;
		}
		buf_consume(&c->out, (size_t)w);
	}
	if (!buf_used(&c->out) && c->out.cap > 64 * 1024)
		buf_free(&c->out); /* give a burst's memory back */
}

static void broadcast(int type, const void *data, size_t n)
{
	for (int i = 0; i < nclients; i++)
		client_send(clients[i], type, data, n);
}

static int live_clients(void)
{
	int k = 0;
	for (int i = 0; i < nclients; i++)
		k += !clients[i]->dead;
	return k;
}

static void sweep_clients(void)
{
	int j = 0;
	for (int i = 0; i < nclients; i++) {
		struct client *c = clients[i];
		if (c->dead) {
			buf_free(&c->in);
			buf_free(&c->out);
			free(c);
		} else {
			clients[j++] = c;
		}
	}
	nclients = j;
}

static void send_state(struct client *c)
{
	struct buf b = {0};
	char ts[64];
	switch (state) {
	case ST_CREATED:
	case ST_STARTING:
		buf_puts(&b, "{\"status\":\"created\",\"pid\":0,\"exitCode\":0}");
		break;
	case ST_RUNNING:
	case ST_DRAINING:
		buf_printf(&b, "{\"status\":\"running\",\"pid\":%d,\"exitCode\":0}", (int)container_pid);
		break;
	case ST_CLEANUP:
	case ST_EXITED:
		fmt_time(ts, sizeof ts, &finished_at);
		buf_printf(&b, "{\"status\":\"exited\",\"pid\":%d,\"exitCode\":%d,\"signal\":%d,\"finishedAt\":\"%s\"}",
			   (int)container_pid, exit_code, exit_signal, ts);
		break;
	case ST_FAILED:
		buf_puts(&b, "{\"status\":\"exited\",\"pid\":0,\"exitCode\":-1,\"startFailed\":true,\"message\":");
		json_str(&b, fail_msg);
		buf_puts(&b, "}");
		break;
	}
	client_send(c, F_STATE, b.p, buf_used(&b));
	buf_free(&b);
}

/* --------------------------------------------------------------- output */

static void log_record(int stream, const char *data, size_t n, const char *ts)
{
	buf_puts(&logb, "{\"log\":\"");
	json_escape(&logb, (const unsigned char *)data, n);
	buf_puts(&logb, stream == 2 ? "\",\"stream\":\"stderr\",\"time\":\"" : "\",\"stream\":\"stdout\",\"time\":\"");
	buf_puts(&logb, ts);
	buf_puts(&logb, "\"}\n");
}

static void log_flush(void)
{
	if (log_fd >= 0 && buf_used(&logb))
		write_all(log_fd, logb.p + logb.off, buf_used(&logb)); /* a full disk must not stop the container */
	logb.off = logb.len = 0;
	if (logb.cap > 256 * 1024)
		buf_free(&logb);
}

/* Splits output into one record per line; a line longer than LOG_LINE_MAX is
 * cut into records without a trailing newline. */
static void log_data(int stream, const char *d, size_t n)
{
	if (log_fd < 0)
		return;
	char ts[64];
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	fmt_time(ts, sizeof ts, &now);
	struct buf *p = &partial[stream];
	while (n) {
		const char *nl = memchr(d, '\n', n);
		size_t take = nl ? (size_t)(nl - d) + 1 : n;
		size_t room = LOG_LINE_MAX - buf_used(p);
		size_t seg = take < room ? take : room;
		if (buf_used(p) == 0 && seg == take && nl) {
			log_record(stream, d, seg, ts); /* whole line in hand: skip the copy */
		} else {
			buf_append(p, d, seg);
			if ((seg == take && nl) || buf_used(p) >= LOG_LINE_MAX) {
				log_record(stream, p->p + p->off, buf_used(p), ts);
				p->off = p->len = 0;
			}
		}
		d += seg;
		n -= seg;
	}
	if (!buf_used(p) && p->cap)
		buf_free(p);
	log_flush();
}

static void log_flush_partials(void)
{
	if (log_fd < 0)
		return;
	char ts[64];
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	fmt_time(ts, sizeof ts, &now);
	for (int s = 1; s <= 2; s++) {
		if (buf_used(&partial[s]))
			log_record(s, partial[s].p + partial[s].off, buf_used(&partial[s]), ts);
		buf_free(&partial[s]);
	}
	log_flush();
}

static void emit_output(int stream, const char *d, size_t n)
{
	log_data(stream, d, n);
	for (int i = 0; i < nclients; i++) {
		struct client *c = clients[i];
		if (stream == 2 ? c->sub_err : c->sub_out)
			client_send(c, stream == 2 ? F_STDERR : F_STDOUT, d, n);
	}
}

static void held_add(int stream, const char *d, size_t n)
{
	unsigned char h[5] = {(unsigned char)stream, (unsigned char)(n >> 24), (unsigned char)(n >> 16),
			      (unsigned char)(n >> 8), (unsigned char)n};
	buf_append(&held, h, 5);
	buf_append(&held, d, n);
}

/* Replays (or, with emit == 0, concatenates into text) what was read while the
 * runtime was still running. */
static void held_release(int emit, struct buf *text)
{
	size_t i = held.off;
	while (i + 5 <= held.len) {
		int stream = (unsigned char)held.p[i];
		size_t n = ((size_t)(unsigned char)held.p[i + 1] << 24) | ((size_t)(unsigned char)held.p[i + 2] << 16) |
			   ((size_t)(unsigned char)held.p[i + 3] << 8) | (size_t)(unsigned char)held.p[i + 4];
		if (emit)
			emit_output(stream, held.p + i + 5, n);
		else if (text)
			buf_append(text, held.p + i + 5, n);
		i += 5 + n;
	}
	buf_free(&held);
}

/* ------------------------------------------------------------ processes */

static pid_t spawn(char *const argv[], int fd0, int fd1, int fd2)
{
	pid_t pid = fork();
	if (pid != 0)
		return pid;
	/* dup2 clears close-on-exec on the target, so these three are the only
	 * descriptors of ours the runtime (and so the container) inherits. */
	if (fd0 >= 0 && fd0 != 0)
		dup2(fd0, 0);
	if (fd1 >= 0 && fd1 != 1)
		dup2(fd1, 1);
	if (fd2 >= 0 && fd2 != 2)
		dup2(fd2, 2);
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	signal(SIGPIPE, SIG_DFL); /* an ignored signal would stay ignored across exec */
	signal(SIGHUP, SIG_DFL);
	execv(argv[0], argv);
	dprintf(2, "exec %s: %s\n", argv[0], strerror(errno));
	_exit(127);
}

static int write_file_atomic(const char *name, const char *data, size_t n)
{
	char tmp[4200], final[4200];
	snprintf(tmp, sizeof tmp, "%s/%s.tmp", opt.dir, name);
	path_join(final, sizeof final, opt.dir, name);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -1;
	/* No fsync: the rename makes the file atomic against a crash of any
	 * process, which is what berthd recovers from; after a power loss the
	 * container is gone anyway. An fsync here cost the exit path ~5 ms. */
	if (write_all(fd, data, n) < 0) {
		close(fd);
		unlink(tmp);
		return -1;
	}
	close(fd);
	if (rename(tmp, final) < 0) {
		unlink(tmp);
		return -1;
	}
	return 0;
}

/* sun_path holds only 107 bytes. A longer DIR/name is reached through the
 * /proc/PID/fd link of an open handle on DIR, which path resolution follows
 * like a directory; the runtime, running elsewhere with its own working
 * directory, can be given the same kind of short path. */
static int dir_fd = -1;

static int short_path(char *out, size_t cap, pid_t pid, const char *name)
{
	if (dir_fd < 0)
		dir_fd = open(opt.dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dir_fd < 0)
		return -1;
	if (pid)
		snprintf(out, cap, "/proc/%d/fd/%d/%s", (int)pid, dir_fd, name);
	else
		snprintf(out, cap, "/proc/self/fd/%d/%s", dir_fd, name);
	return 0;
}

/* Binds a listening unix socket at DIR/name. */
static int unix_listen(const char *name, char *path, size_t pathcap, int backlog)
{
	path_join(path, pathcap, opt.dir, name);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -1;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int saved;
	if (strlen(path) < sizeof sa.sun_path)
		snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
	else if (short_path(sa.sun_path, sizeof sa.sun_path, 0, name) < 0)
		goto fail;
	unlink(path); /* stale socket of an earlier run */
	if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, backlog) < 0)
		goto fail;
	return fd;
fail:
	saved = errno;
	close(fd);
	errno = saved;
	return -1;
}

/* ---------------------------------------------------------------- overlay */

static int mount_overlay(char *err, size_t errcap)
{
	char spec[8192];
	char *f[512];
	int nf = 0;
	if (strlen(opt.overlay) >= sizeof spec) {
		snprintf(err, errcap, "overlay: specification too long");
		return -1;
	}
	strcpy(spec, opt.overlay);
	for (char *s = spec, *c;; s = c + 1) {
		if (nf == 512) {
			snprintf(err, errcap, "overlay: too many layers");
			return -1;
		}
		f[nf++] = s;
		if (!(c = strchr(s, ':')))
			break;
		*c = 0;
	}
	if (nf < 4) {
		snprintf(err, errcap, "overlay: expected LOWER[:LOWER...]:UPPER:WORK:TARGET");
		return -1;
	}
	int nlow = nf - 3;
	for (int i = 0; i < nf; i++) {
		if (f[i][0] != '/' || strchr(f[i], ',')) {
			snprintf(err, errcap, "overlay: path %s must be absolute and free of ','", f[i]);
			return -1;
		}
	}
	const char *upper = f[nf - 3], *work = f[nf - 2], *target = f[nf - 1];
	long page = sysconf(_SC_PAGESIZE);
	if (page <= 0)
		page = 4096;

	/* index=off, always: with the index feature overlayfs records in xattrs
	 * which lower stack an upper dir was first mounted over and refuses
	 * mounts that do not match, and some kernels turn it on by default.
	 * Layers here are shared between containers and stacks are assembled
	 * anew on every start, so that bookkeeping can only get in the way.
	 * xino is left to the kernel: it only changes the inode numbers stat
	 * reports, and forcing it on fails where no spare high bits exist. */
	struct buf o = {0};
	for (int pass = 0; pass < 2; pass++) {
		size_t skip = 0; /* bytes of the common parent, pass 1 only */
		const char *cwd = NULL;
		char parent[4096];
		if (pass == 1) {
			/* The options are one page at most: mount from inside the common
			 * parent so the paths shrink to their distinct tails. */
			size_t len = strlen(f[0]);
			for (int i = 1; i < nf - 1; i++) {
				size_t k = 0;
				while (k < len && f[i][k] == f[0][k])
					k++;
				len = k;
			}
			/* Back off to a '/' every path has, so the parent is a whole
			 * component ("/x/ab" and "/x/ac" share "/x", not "/x/a"). */
			size_t k = len ? len - 1 : 0;
			while (k > 0 && f[0][k] != '/')
				k--;
			if (k == 0 || k >= sizeof parent) {
				snprintf(err, errcap, "overlay: mount options exceed a page and the paths share no parent");
				buf_free(&o);
				return -1;
			}
			memcpy(parent, f[0], k);
			parent[k] = 0;
			skip = k + 1;
			cwd = parent;
		}
		o.off = o.len = 0;
		buf_puts(&o, "lowerdir=");
		for (int i = 0; i < nlow; i++) {
			if (i)
				buf_puts(&o, ":");
			buf_puts(&o, f[i] + skip);
		}
		buf_printf(&o, ",upperdir=%s,workdir=%s,index=off", upper + skip, work + skip);
		buf_append(&o, "", 1);
		if (buf_used(&o) > (size_t)page) {
			if (pass == 0)
				continue;
			snprintf(err, errcap, "overlay: mount options exceed a page even with relative paths");
			buf_free(&o);
			return -1;
		}
		if (cwd && chdir(cwd) < 0) {
			snprintf(err, errcap, "overlay: chdir %.3000s: %s", cwd, strerror(errno));
			buf_free(&o);
			return -1;
		}
		/* The previous run's overlay, detached lazily, lives on until the
		 * last process of that run has finished exiting (a container's
		 * orphans are killed asynchronously when its init dies). A new
		 * mount over the same upper and work dirs can meanwhile fail with
		 * ENOENT or EBUSY while the kernel tears the old one down: retry
		 * for up to two seconds. */
		int r, saved;
		for (int attempt = 0;; attempt++) {
			r = mount("overlay", target, "overlay", 0, o.p + o.off);
			saved = errno;
			if (r == 0 || (saved != ENOENT && saved != EBUSY) || attempt >= 100)
				break;
			struct timespec ts = {0, 20 * 1000 * 1000};
			nanosleep(&ts, NULL);
		}
		if (cwd && chdir("/") < 0) {
		}
		buf_free(&o);
		if (r < 0) {
			snprintf(err, errcap, "mount overlay on %s: %s", target, strerror(saved));
			return -1;
		}
		snprintf(overlay_target, sizeof overlay_target, "%s", target);
		overlay_mounted = 1;
		return 0;
	}
	buf_free(&o);
	return -1;
}

static void unmount_overlay(void)
{
	if (!overlay_mounted)
		return;
	/* Detached, because a process that escaped the container's teardown
	 * could still hold the tree busy; it disappears when that one goes. */
	umount2(overlay_target, MNT_DETACH);
	overlay_mounted = 0;
}

/* ------------------------------------------------------------- the exit */

/* Identity of our control socket: a monitor started for the same container
 * after this one may already have bound the same path. */
static dev_t sock_dev;
static ino_t sock_ino;

static void finish(int code)
{
	struct stat st;
	if (stat(sock_path, &st) == 0 && st.st_dev == sock_dev && st.st_ino == sock_ino)
		unlink(sock_path);
	if (console_path[0])
		unlink(console_path);
	exit(code);
}

static void close_stdio(void)
{
	xclose(&out_fd);
	xclose(&err_fd);
	xclose(&in_fd);
	xclose(&rt_fd);
	xclose(&master_fd);
	xclose(&console_conn_fd);
	if (console_listen_fd >= 0) {
		xclose(&console_listen_fd);
		unlink(console_path);
	}
	buf_free(&stdin_buf);
	stdin_done = 1;
	for (int i = 0; i < nclients; i++)
		clients[i]->paused = 0;
}

static void start_failed(const char *msg)
{
	snprintf(fail_msg, sizeof fail_msg, "%s", msg);
	struct buf b = {0};
	buf_puts(&b, "{\"startFailed\":true,\"message\":");
	json_str(&b, fail_msg);
	buf_puts(&b, "}");
	write_file_atomic("exit", b.p + b.off, buf_used(&b));
	unmount_overlay();
	close_stdio();
	buf_free(&held);
	b.off = b.len = 0;
	buf_puts(&b, "{\"message\":");
	json_str(&b, fail_msg);
	buf_puts(&b, "}");
	state = ST_FAILED;
	linger_deadline = now_ms() + LINGER_MS;
	broadcast(F_START_FAILED, b.p + b.off, buf_used(&b));
	buf_free(&b);
}

/* The memory cgroup's OOM counter (v1 memory.oom_control, v2
 * memory.events), located from the container's pid once it runs. It is read
 * at the exit, before `runtime delete` removes the cgroup, so that a kill by
 * the kernel's OOM killer can be reported (docker's State.OOMKilled). The v1
 * memory hierarchy is taken to be mounted at /sys/fs/cgroup/memory. */
static char oom_file[4096];

static void find_oom_file(pid_t pid)
{
	char p[64], line[4096];
	snprintf(p, sizeof p, "/proc/%d/cgroup", (int)pid);
	FILE *f = fopen(p, "re");
	if (!f)
		return;
	int v2 = access("/sys/fs/cgroup/cgroup.controllers", F_OK) == 0;
	while (fgets(line, sizeof line, f)) {
		line[strcspn(line, "\n")] = 0;
		char *c1 = strchr(line, ':');
		char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
		if (!c2)
			continue;
		*c1 = 0;
		*c2 = 0;
		const char *ctrls = c1 + 1, *path = c2 + 1;
		if (v2) {
			if (strcmp(line, "0") == 0 && *ctrls == 0)
				snprintf(oom_file, sizeof oom_file, "/sys/fs/cgroup%s/memory.events", path);
			continue;
		}
		char list[256];
		snprintf(list, sizeof list, ",%s,", ctrls);
		if (strstr(list, ",memory,"))
			snprintf(oom_file, sizeof oom_file, "/sys/fs/cgroup/memory%s/memory.oom_control", path);
	}
	fclose(f);
}

static long long read_oom_kills(void)
{
	if (!oom_file[0])
		return 0;
	FILE *f = fopen(oom_file, "re");
	if (!f)
		return 0;
	char key[64];
	long long v, n = 0;
	while (fscanf(f, "%63s %lld", key, &v) == 2) {
		if (strcmp(key, "oom_kill") == 0)
			n = v;
	}
	fclose(f);
	return n;
}

/* Record the exit and tell every client. This comes before the runtime's
 * cleanup so that waiters learn the result without paying for it. */
static void report_exit(void)
{
	char ts[64];
	fmt_time(ts, sizeof ts, &finished_at);
	struct buf b = {0};
	int oom = !opt.exec_process && read_oom_kills() > 0;
	buf_printf(&b, "{\"exitCode\":%d,\"signal\":%d,\"finishedAt\":\"%s\"%s}", exit_code, exit_signal, ts, oom ? ",\"oomKilled\":true" : "");
	write_file_atomic("exit", b.p, buf_used(&b));
	broadcast(F_EXIT, b.p, buf_used(&b));
	buf_free(&b);
}

/* The runtime state and the mount are gone: the container's resources are
 * released, and CLEANED says so (berthd removes the container's files then). */
static void finalize(void)
{
	unmount_overlay();
	state = ST_EXITED;
	linger_deadline = now_ms() + LINGER_MS;
	broadcast(F_CLEANED, "", 0);
}

static void finish_drain(void)
{
	log_flush_partials();
	close_stdio();
	report_exit();
	if (opt.exec_process) {
		finalize();
		return;
	}
	/* Removes runc's state and the cgroup, and kills anything of the
	 * container still alive (a shared pid namespace keeps no init to do it). */
	char *argv[] = {(char *)opt.runtime, "--root", (char *)opt.runtime_root, "delete", "-f", (char *)opt.id, NULL};
	delete_pid = spawn(argv, -1, -1, -1);
	if (delete_pid < 0) {
		finalize();
		return;
	}
	state = ST_CLEANUP;
	delete_deadline = now_ms() + DELETE_TIMEOUT_MS;
}

static void container_exited(int status)
{
	clock_gettime(CLOCK_REALTIME, &finished_at);
	if (WIFSIGNALED(status)) {
		exit_signal = WTERMSIG(status);
		exit_code = 128 + exit_signal;
	} else {
		exit_signal = 0;
		exit_code = WEXITSTATUS(status);
	}
	state = ST_DRAINING;
	drain_deadline = now_ms() + DRAIN_MS;
	/* Nobody is left to read stdin; drop it so writers are not held up. */
	xclose(&in_fd);
	buf_free(&stdin_buf);
	stdin_done = 1;
	for (int i = 0; i < nclients; i++)
		clients[i]->paused = 0;
	if (out_fd < 0 && err_fd < 0 && master_fd < 0)
		finish_drain();
}

/* ---------------------------------------------------------------- starting */

static void stdin_flush(void);

/* Turns what the runtime printed into one message: the msg of the last
 * error line when it logs in logfmt or JSON, else the whole text trimmed. */
static void runtime_error_text(const char *text, char *out, size_t cap, int json)
{
	out[0] = 0;
	const char *level = json ? "\"level\":\"error\"" : "level=error";
	const char *msgkey = json ? "\"msg\":" : "msg=";
	for (const char *line = text; line && *line;) {
		const char *eol = strchr(line, '\n');
		size_t ll = eol ? (size_t)(eol - line) : strlen(line);
		char tmp[MSG_MAX * 2];
		if (ll >= sizeof tmp)
			ll = sizeof tmp - 1;
		memcpy(tmp, line, ll);
		tmp[ll] = 0;
		char *m;
		if ((strstr(tmp, level) || (!json && strstr(tmp, "level=fatal"))) && (m = strstr(tmp, msgkey))) {
			m += strlen(msgkey);
			if (*m == '"') {
				unquote(m + 1, out, cap);
			} else {
				size_t k = strcspn(m, " \t");
				if (k >= cap)
					k = cap - 1;
				memcpy(out, m, k);
				out[k] = 0;
			}
		}
		line = eol ? eol + 1 : NULL;
	}
	if (out[0] || json)
		return;
	while (*text == ' ' || *text == '\t' || *text == '\n' || *text == '\r')
		text++;
	size_t n = strlen(text);
	while (n && (text[n - 1] == ' ' || text[n - 1] == '\t' || text[n - 1] == '\n' || text[n - 1] == '\r'))
		n--;
	if (n >= cap)
		n = cap - 1;
	memcpy(out, text, n);
	out[n] = 0;
}

/* The last error of the runtime's JSON log file (--log-runtime). */
static void runtime_log_error(char *out, size_t cap)
{
	out[0] = 0;
	if (!opt.log_runtime)
		return;
	int fd = open(opt.log_runtime, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	struct stat st;
	static char tail[65537];
	size_t n = 0;
	if (fstat(fd, &st) == 0) {
		off_t from = st.st_size > 65536 ? st.st_size - 65536 : 0;
		ssize_t r = pread(fd, tail, 65536, from);
		n = r > 0 ? (size_t)r : 0;
	}
	close(fd);
	tail[n] = 0;
	runtime_error_text(tail, out, cap, 1);
}

static void drain_nonblocking(int *fd, int stream, struct buf *text)
{
	while (*fd >= 0) {
		ssize_t r = read(*fd, rbuf, sizeof rbuf);
		if (r > 0) {
			if (text)
				buf_append(text, rbuf, (size_t)r);
			else
				held_add(stream, rbuf, (size_t)r);
			continue;
		}
		if (r < 0 && errno == EINTR)
			continue;
		if (r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
			xclose(fd);
		return;
	}
}

static void apply_winsize(void)
{
	if (master_fd >= 0 && have_winsize)
		ioctl(master_fd, TIOCSWINSZ, &winsize);
}

/* Takes the pty master the runtime sends over the console socket. Returns 1
 * once the master is in hand. */
static int console_recv(void)
{
	if (console_conn_fd < 0)
		return 0;
	char data[512];
	struct iovec iov = {data, sizeof data};
	union {
		struct cmsghdr h;
		char b[CMSG_SPACE(sizeof(int) * 4)];
	} u;
	struct msghdr m = {0};
	m.msg_iov = &iov;
	m.msg_iovlen = 1;
	m.msg_control = u.b;
	m.msg_controllen = sizeof u.b;
	ssize_t r = recvmsg(console_conn_fd, &m, MSG_CMSG_CLOEXEC);
	if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return 0;
	int got = -1;
	if (r > 0) {
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
			if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
				continue;
			int nfd = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
			int *fds = (int *)CMSG_DATA(c);
			for (int i = 0; i < nfd; i++) {
				if (got < 0)
					got = fds[i];
				else
					close(fds[i]);
			}
		}
	}
	xclose(&console_conn_fd);
	if (got < 0)
		return 0;
	master_fd = got;
	set_nonblock(master_fd);
	apply_winsize();
	xclose(&console_listen_fd);
	unlink(console_path);
	return 1;
}

static void console_accept(void)
{
	if (console_listen_fd < 0 || console_conn_fd >= 0)
		return;
	int c = accept4(console_listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (c >= 0)
		console_conn_fd = c;
}

/* The runtime has sent the master before it exits; collect it if the poll
 * loop has not got round to it yet. */
static void console_wait(void)
{
	long long until = now_ms() + CONSOLE_WAIT_MS;
	while (master_fd < 0 && console_listen_fd >= 0) {
		long long left = until - now_ms();
		if (left <= 0)
			return;
		struct pollfd p = {console_conn_fd >= 0 ? console_conn_fd : console_listen_fd, POLLIN, 0};
		if (poll(&p, 1, (int)left) <= 0)
			continue;
		if (console_conn_fd >= 0)
			console_recv();
		else
			console_accept();
	}
}

static void runtime_exited(int status)
{
	runtime_pid = -1;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
		char pidtxt[64] = {0};
		int fd = open(pid_path, O_RDONLY | O_CLOEXEC);
		ssize_t r = fd >= 0 ? read(fd, pidtxt, sizeof pidtxt - 1) : -1;
		if (fd >= 0)
			close(fd);
		long pid = r > 0 ? strtol(pidtxt, NULL, 10) : 0;
		if (pid <= 0) {
			start_failed("runtime reported success but wrote no pid file");
			return;
		}
		container_pid = (pid_t)pid;
		if (!opt.exec_process)
			find_oom_file(container_pid);
		if (opt.terminal) {
			xclose(&rt_fd); /* only the runtime ever wrote there */
			buf_free(&rt_text);
			if (master_fd < 0)
				console_wait();
		} else {
			drain_nonblocking(&out_fd, 1, NULL);
			drain_nonblocking(&err_fd, 2, NULL);
		}
		state = ST_RUNNING;
		char js[64];
		int n = snprintf(js, sizeof js, "{\"pid\":%ld}", pid);
		broadcast(F_STARTED, js, (size_t)n);
		held_release(1, NULL);
		for (int i = 0; i < nearly; i++) {
			if (early[i].pid == container_pid) {
				container_exited(early[i].status);
				break;
			}
		}
		nearly = 0;
		return;
	}

	/* Start failed: whatever came through the pipes is the runtime's error
	 * text (the container never ran), so it is reported, not logged. */
	struct buf text = rt_text;
	memset(&rt_text, 0, sizeof rt_text);
	if (opt.terminal) {
		drain_nonblocking(&rt_fd, 0, &text);
	} else {
		drain_nonblocking(&out_fd, 1, NULL);
		drain_nonblocking(&err_fd, 2, NULL);
		held_release(0, &text);
	}
	buf_append(&text, "", 1);
	char msg[MSG_MAX];
	runtime_error_text(text.p + text.off, msg, sizeof msg, 0);
	buf_free(&text);
	if (!msg[0])
		runtime_log_error(msg, sizeof msg);
	if (!msg[0]) {
		if (WIFSIGNALED(status))
			snprintf(msg, sizeof msg, "runtime killed by signal %d", WTERMSIG(status));
		else
			snprintf(msg, sizeof msg, "runtime exited with status %d", WEXITSTATUS(status));
	}
	start_failed(msg);
}

static void do_start(struct client *from)
{
	if (state != ST_CREATED) {
		static const char m[] = "{\"message\":\"already started\"}";
		client_send(from, F_START_FAILED, m, sizeof m - 1);
		return;
	}
	char err[MSG_MAX];
	if (opt.overlay && !opt.exec_process && mount_overlay(err, sizeof err) < 0) {
		start_failed(err);
		return;
	}
	unlink(pid_path);

	int c0 = -1, c1 = -1, c2 = -1; /* the child's ends */
	int p[2];
	if (opt.terminal) {
		console_listen_fd = unix_listen("console.sock", console_path, sizeof console_path, 1);
		if (console_listen_fd < 0) {
			snprintf(err, sizeof err, "console socket %s: %s", console_path, strerror(errno));
			console_path[0] = 0;
			start_failed(err);
			return;
		}
		if (strlen(console_path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
			short_path(console_arg, sizeof console_arg, getpid(), "console.sock");
		else
			console_arg[0] = 0;
		if (pipe2(p, O_CLOEXEC) < 0)
			goto pipefail;
		rt_fd = p[0];
		c1 = c2 = p[1];
	} else {
		if (pipe2(p, O_CLOEXEC) < 0)
			goto pipefail;
		out_fd = p[0];
		c1 = p[1];
		if (pipe2(p, O_CLOEXEC) < 0)
			goto pipefail;
		err_fd = p[0];
		c2 = p[1];
		if (opt.stdin_open) {
			if (pipe2(p, O_CLOEXEC) < 0)
				goto pipefail;
			c0 = p[0];
			in_fd = p[1];
			set_nonblock(in_fd);
		}
	}
	if (out_fd >= 0) set_nonblock(out_fd);
	if (err_fd >= 0) set_nonblock(err_fd);
	if (rt_fd >= 0) set_nonblock(rt_fd);

	char *argv[32];
	int a = 0;
	argv[a++] = (char *)opt.runtime;
	argv[a++] = "--root";
	argv[a++] = (char *)opt.runtime_root;
	if (opt.log_runtime) {
		argv[a++] = "--log";
		argv[a++] = (char *)opt.log_runtime;
		argv[a++] = "--log-format";
		argv[a++] = "json";
	}
	argv[a++] = opt.exec_process ? "exec" : "run";
	argv[a++] = "-d";
	argv[a++] = "--pid-file";
	argv[a++] = pid_path;
	if (opt.terminal) {
		argv[a++] = "--console-socket";
		argv[a++] = console_arg[0] ? console_arg : console_path;
	}
	if (opt.exec_process) {
		argv[a++] = "--process";
		argv[a++] = (char *)opt.exec_process;
	} else {
		argv[a++] = "--bundle";
		argv[a++] = (char *)opt.bundle;
	}
	argv[a++] = (char *)opt.id;
	argv[a] = NULL;

	runtime_pid = spawn(argv, c0, c1, c2);
	int saved = errno;
	if (c0 >= 0) close(c0);
	if (c1 >= 0) close(c1);
	if (c2 >= 0 && c2 != c1) close(c2);
	if (runtime_pid < 0) {
		snprintf(err, sizeof err, "fork: %s", strerror(saved));
		start_failed(err);
		return;
	}
	state = ST_STARTING;
	if (stdin_close_pending || buf_used(&stdin_buf))
		stdin_flush(); /* STDIN or STDIN_CLOSE that came before START */
	return;
pipefail:
	snprintf(err, sizeof err, "pipe: %s", strerror(errno));
	if (c0 >= 0) close(c0);
	if (c1 >= 0) close(c1);
	if (c2 >= 0 && c2 != c1) close(c2);
	start_failed(err);
}

/* ------------------------------------------------------------------ stdin */

static int stdin_target(void)
{
	return opt.terminal ? master_fd : in_fd;
}

static void stdin_flush(void)
{
	int fd = stdin_target();
	while (fd >= 0 && buf_used(&stdin_buf)) {
		ssize_t w = write(fd, stdin_buf.p + stdin_buf.off, buf_used(&stdin_buf));
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			/* The reader is gone (EPIPE): nothing will ever read this. */
			buf_free(&stdin_buf);
			if (!opt.terminal)
				xclose(&in_fd);
			stdin_done = 1;
			break;
		}
		buf_consume(&stdin_buf, (size_t)w);
	}
	if (!buf_used(&stdin_buf)) {
		buf_free(&stdin_buf);
		if (stdin_close_pending && !opt.terminal && in_fd >= 0) {
			xclose(&in_fd);
			stdin_done = 1;
		}
	}
	if (buf_used(&stdin_buf) < STDIN_HIGH_WATER / 2)
		for (int i = 0; i < nclients; i++)
			clients[i]->paused = 0;
}

/* --------------------------------------------------------------- commands */

static void handle_frame(struct client *c, int type, const char *p, size_t n)
{
	char js[512];
	size_t jl = n < sizeof js - 1 ? n : sizeof js - 1;
	switch (type) {
	case F_HELLO: {
		memcpy(js, p, jl);
		js[jl] = 0;
		const char *v;
		c->sub_out = (v = json_value(js, "stdout")) && strncmp(v, "true", 4) == 0;
		c->sub_err = (v = json_value(js, "stderr")) && strncmp(v, "true", 4) == 0;
		send_state(c);
		break;
	}
	case F_START:
		do_start(c);
		break;
	case F_STDIN:
		if (!opt.stdin_open || stdin_done || stdin_close_pending)
			break;
		buf_append(&stdin_buf, p, n);
		stdin_flush();
		if (buf_used(&stdin_buf) > STDIN_HIGH_WATER)
			c->paused = 1;
		break;
	case F_STDIN_CLOSE:
		/* A pty has no write-only end to close; a client that wants EOF on
		 * a terminal sends the EOF character (^D) as data. */
		if (opt.terminal)
			break;
		stdin_close_pending = 1;
		if (state != ST_CREATED)
			stdin_flush();
		break;
	case F_RESIZE: {
		if (!opt.terminal)
			break;
		memcpy(js, p, jl);
		js[jl] = 0;
		const char *h = json_value(js, "h"), *w = json_value(js, "w");
		if (!h || !w)
			break;
		long hv = strtol(h, NULL, 10), wv = strtol(w, NULL, 10);
		if (hv <= 0 || wv <= 0 || hv > 65535 || wv > 65535)
			break;
		memset(&winsize, 0, sizeof winsize);
		winsize.ws_row = (unsigned short)hv;
		winsize.ws_col = (unsigned short)wv;
		have_winsize = 1;
		apply_winsize();
		break;
	}
	case F_SHUTDOWN:
		/* Before START there is nothing to look after; while the container
		 * runs the request is remembered and honoured once EXIT is out. */
		if (state == ST_CREATED)
			finish(0);
		shutdown_requested = 1;
		break;
	default:
		break; /* unknown frames are ignored so the protocol can grow */
	}
}

static void client_read(struct client *c)
{
	ssize_t r = read(c->fd, rbuf, sizeof rbuf);
	if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	if (r <= 0) {
		drop_client(c);
		return;
	}
	buf_append(&c->in, rbuf, (size_t)r);
	while (!c->dead && buf_used(&c->in) >= 5) {
		const unsigned char *h = (const unsigned char *)c->in.p + c->in.off;
		size_t n = ((size_t)h[1] << 24) | ((size_t)h[2] << 16) | ((size_t)h[3] << 8) | h[4];
		if (n > CLIENT_FRAME_LIMIT) {
			drop_client(c);
			return;
		}
		if (buf_used(&c->in) < 5 + n)
			break;
		handle_frame(c, h[0], (const char *)h + 5, n);
		buf_consume(&c->in, 5 + n);
	}
	if (!buf_used(&c->in) && c->in.cap)
		buf_free(&c->in);
}

static void accept_clients(void)
{
	for (;;) {
		int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd < 0)
			return;
		if (nclients >= MAX_CLIENTS) {
			close(fd);
			continue;
		}
		struct client *c = calloc(1, sizeof *c);
		if (!c)
			abort();
		c->fd = fd;
		clients[nclients++] = c;
		/* A berthd that was down when the container exited learns the
		 * result at once, without having to ask. */
		if (state == ST_CLEANUP || state == ST_EXITED || state == ST_FAILED)
			send_state(c);
	}
}

/* ---------------------------------------------------------------- signals */

static void reap(void)
{
	struct signalfd_siginfo si;
	while (read(sig_fd, &si, sizeof si) == sizeof si) {
	}
	for (;;) {
		int status;
		pid_t pid = waitpid(-1, &status, WNOHANG);
		if (pid <= 0)
			return;
		if (pid == runtime_pid) {
			runtime_exited(status);
		} else if (pid == delete_pid) {
			delete_pid = -1;
			if (state == ST_CLEANUP)
				finalize();
		} else if (container_pid > 0 && pid == container_pid && state == ST_RUNNING) {
			container_exited(status);
		} else if (state == ST_STARTING && nearly < EARLY_MAX) {
			/* The container may die before the runtime exits and tells us
			 * its pid; keep the status until then. */
			early[nearly].pid = pid;
			early[nearly].status = status;
			nearly++;
		}
		/* anything else is an orphan reparented to us: reaped and forgotten */
	}
}

/* ------------------------------------------------------------------- main */

static void usage_fail(const char *msg)
{
	dprintf(1, "error: %s\n", msg);
	dprintf(2, "berth-monitor: %s\n", msg);
	exit(2);
}

static const char *absolute(const char *p)
{
	if (!p || p[0] == '/')
		return p;
	static char cwd[4096];
	if (!getcwd(cwd, sizeof cwd))
		usage_fail("getcwd failed");
	size_t n = strlen(cwd) + strlen(p) + 2;
	char *r = malloc(n);
	if (!r)
		abort();
	snprintf(r, n, "%s/%s", cwd, p);
	return r;
}

static void parse_args(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char **dst = NULL;
		if (!strcmp(a, "--terminal")) { opt.terminal = 1; continue; }
		if (!strcmp(a, "--stdin")) { opt.stdin_open = 1; continue; }
		if (!strcmp(a, "--id")) dst = &opt.id;
		else if (!strcmp(a, "--dir")) dst = &opt.dir;
		else if (!strcmp(a, "--runtime")) dst = &opt.runtime;
		else if (!strcmp(a, "--runtime-root")) dst = &opt.runtime_root;
		else if (!strcmp(a, "--bundle")) dst = &opt.bundle;
		else if (!strcmp(a, "--log")) dst = &opt.log;
		else if (!strcmp(a, "--log-runtime")) dst = &opt.log_runtime;
		else if (!strcmp(a, "--overlay")) dst = &opt.overlay;
		else if (!strcmp(a, "--exec")) dst = &opt.exec_process;
		else {
			char m[256];
			snprintf(m, sizeof m, "unknown argument %.200s", a);
			usage_fail(m);
		}
		if (i + 1 >= argc) {
			char m[256];
			snprintf(m, sizeof m, "%.200s needs a value", a);
			usage_fail(m);
		}
		*dst = argv[++i];
	}
	if (!opt.id || !opt.id[0]) usage_fail("--id is required");
	if (!opt.dir) usage_fail("--dir is required");
	if (!opt.runtime) usage_fail("--runtime is required");
	if (!opt.runtime_root) usage_fail("--runtime-root is required");
	if (!opt.bundle && !opt.exec_process) usage_fail("--bundle is required");
	/* We chdir to / so as not to pin whatever directory berthd ran in. */
	opt.dir = absolute(opt.dir);
	opt.runtime = absolute(opt.runtime);
	opt.runtime_root = absolute(opt.runtime_root);
	opt.bundle = absolute(opt.bundle);
	opt.log = absolute(opt.log);
	opt.log_runtime = absolute(opt.log_runtime);
	opt.exec_process = absolute(opt.exec_process);
}

/* berthd closes everything but fd 1; without 0 and 2 open, our own sockets
 * would land there and be clobbered when stdio is pointed at /dev/null. */
static void ensure_stdio(void)
{
	for (int fd = 0; fd < 3; fd++) {
		if (fcntl(fd, F_GETFD) >= 0)
			continue;
		int n = open("/dev/null", O_RDWR);
		if (n >= 0 && n != fd) {
			dup2(n, fd);
			close(n);
		}
	}
}

int main(int argc, char **argv)
{
	/* Whatever else was inherited would otherwise reach the container. */
	close_range(3, ~0U, 0);
	ensure_stdio();
	parse_args(argc, argv);
	if (setsid() < 0 && errno != EPERM) { /* EPERM: already a session leader */
	}
	if (chdir("/") < 0)
		usage_fail("chdir /");
	prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
	signal(SIGPIPE, SIG_IGN);
	signal(SIGHUP, SIG_IGN);

	sigset_t chld;
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	sigprocmask(SIG_BLOCK, &chld, NULL);
	sig_fd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sig_fd < 0)
		usage_fail("signalfd failed");

	path_join(pid_path, sizeof pid_path, opt.dir, "pid");
	if (opt.log) {
		log_fd = open(opt.log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
		if (log_fd < 0) {
			char m[4200];
			snprintf(m, sizeof m, "open log %s: %s", opt.log, strerror(errno));
			usage_fail(m);
		}
	}
	listen_fd = unix_listen("monitor.sock", sock_path, sizeof sock_path, 16);
	if (listen_fd < 0) {
		char m[4200];
		snprintf(m, sizeof m, "listen %s: %s", sock_path, strerror(errno));
		usage_fail(m);
	}
	struct stat sst;
	if (stat(sock_path, &sst) == 0) {
		sock_dev = sst.st_dev;
		sock_ino = sst.st_ino;
	}
	if (write_all(1, "ready\n", 6) < 0)
		finish(1); /* berthd is gone before it could use us */
	int null = open("/dev/null", O_RDWR);
	if (null >= 0) {
		dup2(null, 0);
		dup2(null, 1);
		dup2(null, 2);
		if (null > 2)
			close(null);
	}

	struct pollfd pf[MAX_CLIENTS + 16];
	struct client *owner[MAX_CLIENTS + 16];
	for (;;) {
		int n = 0;
#define ADD(fdv, ev) (pf[n].fd = (fdv), pf[n].events = (ev), pf[n].revents = 0, owner[n] = NULL, n++)
		ADD(listen_fd, POLLIN);
		ADD(sig_fd, POLLIN);
		if (console_listen_fd >= 0 && console_conn_fd < 0)
			ADD(console_listen_fd, POLLIN);
		if (console_conn_fd >= 0)
			ADD(console_conn_fd, POLLIN);
		if (rt_fd >= 0)
			ADD(rt_fd, POLLIN);
		/* While starting, output is held for the verdict; past the limit
		 * the pipe simply fills and the container waits. */
		int reading = state == ST_RUNNING || state == ST_DRAINING ||
			      (state == ST_STARTING && buf_used(&held) < HELD_LIMIT);
		if (reading && out_fd >= 0)
			ADD(out_fd, POLLIN);
		if (reading && err_fd >= 0)
			ADD(err_fd, POLLIN);
		if (master_fd >= 0 && (state == ST_RUNNING || state == ST_DRAINING))
			ADD(master_fd, POLLIN | (buf_used(&stdin_buf) ? POLLOUT : 0));
		else if (master_fd >= 0 && buf_used(&stdin_buf))
			ADD(master_fd, POLLOUT);
		if (in_fd >= 0 && buf_used(&stdin_buf))
			ADD(in_fd, POLLOUT);
		for (int i = 0; i < nclients; i++) {
			struct client *c = clients[i];
			short ev = (c->paused ? 0 : POLLIN) | (buf_used(&c->out) ? POLLOUT : 0);
			pf[n].fd = c->fd;
			pf[n].events = ev;
			pf[n].revents = 0;
			owner[n] = c;
			n++;
		}
#undef ADD
		long long deadline = -1;
		if (state == ST_DRAINING)
			deadline = drain_deadline;
		else if (state == ST_CLEANUP)
			deadline = delete_deadline;
		else if (state == ST_EXITED || state == ST_FAILED)
			deadline = linger_deadline;
		int timeout = -1;
		if (deadline >= 0) {
			long long left = deadline - now_ms();
			timeout = left < 0 ? 0 : (int)left;
		}
		int r = poll(pf, (nfds_t)n, timeout);
		if (r < 0 && errno != EINTR)
			finish(1);

		for (int i = 0; r > 0 && i < n; i++) {
			short re = pf[i].revents;
			if (!re)
				continue;
			int fd = pf[i].fd;
			if (owner[i]) {
				struct client *c = owner[i];
				if (c->dead)
					continue;
				if (re & POLLOUT)
					client_flush(c);
				if (!c->dead && (re & (POLLIN | POLLHUP | POLLERR)))
					client_read(c);
				continue;
			}
			if (fd == listen_fd) {
				accept_clients();
			} else if (fd == console_listen_fd) {
				console_accept();
			} else if (fd == console_conn_fd) {
				console_recv();
			} else if (fd == rt_fd) {
				/* The runtime's own output in terminal mode: kept only to
				 * explain a failure. */
				ssize_t k = read(rt_fd, rbuf, sizeof rbuf);
				if (k > 0 && buf_used(&rt_text) < HELD_LIMIT)
					buf_append(&rt_text, rbuf, (size_t)k);
				else if (k == 0 || (k < 0 && errno != EAGAIN && errno != EINTR))
					xclose(&rt_fd);
			} else if (fd == out_fd || fd == err_fd || fd == master_fd) {
				int *fp = fd == out_fd ? &out_fd : fd == err_fd ? &err_fd : &master_fd;
				int stream = fd == err_fd ? 2 : 1;
				if ((re & POLLOUT) && fd == master_fd)
					stdin_flush();
				if (!(re & (POLLIN | POLLHUP | POLLERR)) || *fp != fd)
					continue;
				if (fd == master_fd && !(state == ST_RUNNING || state == ST_DRAINING))
					continue;
				ssize_t k = read(fd, rbuf, sizeof rbuf);
				if (k > 0) {
					if (state == ST_STARTING)
						held_add(stream, rbuf, (size_t)k);
					else
						emit_output(stream, rbuf, (size_t)k);
				} else if (k == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
					/* EOF; on a pty, EIO once no slave is open. */
					xclose(fp);
					if (state == ST_DRAINING && out_fd < 0 && err_fd < 0 && master_fd < 0)
						finish_drain();
				}
			} else if (fd == in_fd) {
				stdin_flush();
			} else if (fd == sig_fd) {
				reap();
			}
		}

		long long now = now_ms();
		if (state == ST_DRAINING && now >= drain_deadline)
			finish_drain(); /* something that shares the pipes outlived the container */
		if (state == ST_CLEANUP && now >= delete_deadline) {
			kill(delete_pid, SIGKILL);
			finalize();
		}
		sweep_clients();
		if (state == ST_EXITED || state == ST_FAILED) {
			int pending = 0;
			for (int i = 0; i < nclients; i++)
				pending |= buf_used(&clients[i]->out) != 0;
			if (now_ms() >= linger_deadline)
				finish(0);
			if ((shutdown_requested || live_clients() == 0) && !pending)
				finish(0);
		}
	}
}
