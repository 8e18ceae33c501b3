/* The UAPI socket server; see uapi_socket.h. */
#include "device/uapi_socket.h"
#include "base/log.h"
#include "base/list.h"

#include <errno.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define UAPI_MAX_REQUEST (8u << 20) /* wg setconf with thousands of peers fits */
#define UAPI_MAX_REPLY (64u << 20)
#define UAPI_MAX_CONNS 32
#define UAPI_READ_CHUNK 4096
#define UAPI_OP_LEN 5 /* "get=1" / "set=1" */

/* ---- strbuf ---- */

static bool strbuf_reserve(struct dev_strbuf *b, size_t extra)
{
	if (b->oom)
		return false;
	size_t need = b->len + extra + 1;
	if (need <= b->cap)
		return true;
	if (b->max && need > b->max) {
		b->oom = true;
		return false;
	}
	size_t cap = b->cap ? b->cap : 256;
	while (cap < need)
		cap *= 2;
	/* Not realloc: requests and replies carry private keys, and realloc
	 * would free the old buffer unwiped. */
	char *p = malloc(cap);
	if (!p) {
		b->oom = true;
		return false;
	}
	if (b->p) {
		memcpy(p, b->p, b->len + 1);
		sodium_memzero(b->p, b->cap);
		free(b->p);
	}
	b->p = p;
	b->cap = cap;
	return true;
}

void dev_strbuf_append(struct dev_strbuf *b, const char *s, size_t n)
{
	if (!strbuf_reserve(b, n))
		return;
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = 0;
}

void dev_strbuf_printf(struct dev_strbuf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || !strbuf_reserve(b, (size_t)n))
		return;
	va_start(ap, fmt);
	vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

void dev_strbuf_free(struct dev_strbuf *b)
{
	if (b->p)
		sodium_memzero(b->p, b->cap);
	free(b->p);
	memset(b, 0, sizeof(*b));
}

/* ---- server ---- */

struct uapi_conn {
	struct dev_uapi *srv;
	int fd;
	struct dev_strbuf in;
	size_t scanned; /* bytes of in already searched for the blank line */
	struct dev_strbuf out;
	size_t out_off;
	struct uapi_conn *prev, *next; /* oldest first */
};

struct dev_uapi {
	rt_t *rt;
	int fd;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	dev_t st_dev;
	ino_t st_ino;
	dev_uapi_handler handler;
	void *ctx;
	struct uapi_conn *head, *tail;
	int nconns;
};

static void conn_free(struct uapi_conn *c)
{
	struct dev_uapi *s = c->srv;
	rt_fd_del(s->rt, c->fd);
	close(c->fd);
	SPZ_DLIST_UNLINK_TAIL(s->head, s->tail, c, prev, next);
	s->nconns--;
	dev_strbuf_free(&c->in);
	dev_strbuf_free(&c->out);
	free(c);
}

/* Writes pending output. false if the connection was closed. */
static bool conn_flush(struct uapi_conn *c)
{
	while (c->out_off < c->out.len) {
		ssize_t n = send(c->fd, c->out.p + c->out_off, c->out.len - c->out_off, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				rt_fd_mod(c->srv->rt, c->fd, EPOLLOUT);
				return true;
			}
			conn_free(c);
			return false;
		}
		c->out_off += (size_t)n;
	}
	if (c->out.p)
		sodium_memzero(c->out.p, c->out.len); /* a get reply holds the private key */
	c->out.len = 0;
	c->out_off = 0;
	rt_fd_mod(c->srv->rt, c->fd, EPOLLIN);
	return true;
}

/* wireguard-go reads the operation line first and closes the connection on
 * any other than "get=1\n" / "set=1\n" (so "get=1\r\n" gets no reply but
 * an immediate close, not a wait for a "\n\n" that never comes). true while
 * the first line is incomplete or a known operation. */
static bool op_line_ok(struct uapi_conn *c)
{
	const char *nl = memchr(c->in.p, '\n', c->in.len);
	if (!nl)
		return true;
	size_t n = (size_t)(nl - c->in.p);
	if (n == UAPI_OP_LEN && (!memcmp(c->in.p, "get=1", n) || !memcmp(c->in.p, "set=1", n)))
		return true;
	bool cr = n > 0 && c->in.p[n - 1] == '\r';
	spz_log(SPZ_LOG_WARNING, "dev", "uapi %s: invalid operation line%s, closing", c->srv->path,
		cr ? " (it ends in \\r\\n: UAPI lines end in \\n)" : "");
	return false;
}

/* Serves every complete request in the input buffer. false if closed. */
static bool conn_process(struct uapi_conn *c)
{
	while (c->out.len == 0) {
		if (c->in.len > 0 && !op_line_ok(c)) {
			conn_free(c);
			return false;
		}
		/* A request ends at its first empty line: "\n\n" (or a lone
		 * "\n" at the very start, which is an invalid operation). */
		size_t end = 0;
		bool found = false;
		if (c->in.len > 0 && c->in.p[0] == '\n') {
			found = true;
		} else {
			size_t i = c->scanned ? c->scanned - 1 : 0;
			for (; i + 1 < c->in.len; i++) {
				if (c->in.p[i] == '\n' && c->in.p[i + 1] == '\n') {
					end = i + 1;
					found = true;
					break;
				}
			}
			if (!found)
				c->scanned = c->in.len;
		}
		if (!found)
			return true;
		c->out.max = UAPI_MAX_REPLY;
		if (c->srv->handler(c->srv->ctx, c->in.p, end + 1, &c->out) < 0) {
			spz_log(SPZ_LOG_DEBUG, "dev", "uapi %s: invalid operation, closing", c->srv->path);
			conn_free(c);
			return false;
		}
		if (c->out.oom) {
			spz_log(SPZ_LOG_WARNING, "dev", "uapi %s: reply too large or out of memory", c->srv->path);
			conn_free(c);
			return false;
		}
		size_t consumed = end + 1;
		memmove(c->in.p, c->in.p + consumed, c->in.len - consumed);
		sodium_memzero(c->in.p + c->in.len - consumed, consumed); /* a set request may hold keys */
		c->in.len -= consumed;
		c->scanned = 0;
		if (!conn_flush(c))
			return false;
	}
	return true;
}

static void on_conn(rt_t *rt, int fd, uint32_t events, void *arg)
{
	(void)rt;
	struct uapi_conn *c = arg;
	if (c->out.len > 0) {
		if (!conn_flush(c))
			return;
		if (c->out.len > 0)
			return;
		if (!conn_process(c))
			return;
		if (c->out.len > 0)
			return;
	}
	if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
		return;
	char chunk[UAPI_READ_CHUNK];
	ssize_t n = recv(fd, chunk, sizeof(chunk), MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	if (n <= 0) {
		conn_free(c); /* peer closed (a probe, or done) or an error */
		return;
	}
	c->in.max = UAPI_MAX_REQUEST;
	dev_strbuf_append(&c->in, chunk, (size_t)n);
	sodium_memzero(chunk, (size_t)n);
	if (c->in.oom) {
		spz_log(SPZ_LOG_DEBUG, "dev", "uapi %s: request over %u bytes, closing", c->srv->path,
			UAPI_MAX_REQUEST);
		conn_free(c);
		return;
	}
	conn_process(c);
}

static void on_accept(rt_t *rt, int fd, uint32_t events, void *arg)
{
	(void)events;
	struct dev_uapi *s = arg;
	for (int i = 0; i < 16; i++) { /* bounded per wake-up */
		int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (cfd < 0)
			return;
		if (s->nconns >= UAPI_MAX_CONNS)
			conn_free(s->head); /* an idle client must not lock others out */
		struct uapi_conn *c = calloc(1, sizeof(*c));
		if (!c || rt_fd_add(rt, cfd, EPOLLIN, on_conn, c) < 0) {
			free(c);
			close(cfd);
			continue;
		}
		c->srv = s;
		c->fd = cfd;
		SPZ_DLIST_APPEND(s->head, s->tail, c, prev, next);
		s->nconns++;
	}
}

/* Is someone accepting on path? */
static bool socket_alive(const struct sockaddr_un *a)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return true; /* cannot tell: do not remove it */
	int rc = connect(fd, (const struct sockaddr *)a, sizeof(*a));
	int err = errno;
	close(fd);
	return rc == 0 || err != ECONNREFUSED;
}

static int mkdir_p(const char *dir)
{
	char tmp[sizeof(((struct sockaddr_un *)0)->sun_path)];
	size_t n = strlen(dir);
	if (n == 0 || n >= sizeof(tmp))
		return -ENAMETOOLONG;
	memcpy(tmp, dir, n + 1);
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

int dev_uapi_listen(rt_t *rt, const char *dir, const char *name, dev_uapi_handler h, void *ctx, struct dev_uapi **out)
{
	struct dev_uapi *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->rt = rt;
	s->handler = h;
	s->ctx = ctx;
	s->fd = -1;
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	int rc = snprintf(a.sun_path, sizeof(a.sun_path), "%s/%s.sock", dir, name);
	if (rc < 0 || (size_t)rc >= sizeof(a.sun_path)) {
		rc = -ENAMETOOLONG;
		goto fail;
	}
	memcpy(s->path, a.sun_path, sizeof(s->path));
	if ((rc = mkdir_p(dir)) < 0)
		goto fail;
	s->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s->fd < 0) {
		rc = -errno;
		goto fail;
	}
	if (bind(s->fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		rc = -errno;
		if (rc != -EADDRINUSE)
			goto fail;
		if (socket_alive(&a))
			goto fail;
		unlink(a.sun_path); /* stale, like wireguard-go does */
		if (bind(s->fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
			rc = -errno;
			goto fail;
		}
	}
	/* Only root-level clients (wg) may configure the device. */
	chmod(a.sun_path, 0600);
	struct stat st;
	if (stat(a.sun_path, &st) == 0) {
		s->st_dev = st.st_dev;
		s->st_ino = st.st_ino;
	}
	rc = listen(s->fd, 128) < 0 ? -errno : rt_fd_add(rt, s->fd, EPOLLIN, on_accept, s);
	if (rc < 0) {
		unlink(a.sun_path);
		goto fail;
	}
	*out = s;
	return 0;
fail:
	if (s->fd >= 0)
		close(s->fd);
	free(s);
	return rc;
}

const char *dev_uapi_path(const struct dev_uapi *s) { return s->path; }

void dev_uapi_close(struct dev_uapi *s)
{
	if (!s)
		return;
	while (s->head)
		conn_free(s->head);
	rt_fd_del(s->rt, s->fd);
	close(s->fd);
	/* Remove the file only if it is still ours (not replaced since). */
	struct stat st;
	if (stat(s->path, &st) == 0 && st.st_dev == s->st_dev && st.st_ino == s->st_ino)
		unlink(s->path);
	free(s);
}
