/* DERP server connections: non-blocking reads and batched writes on the
 * loop, deadlines on one timer per connection, closing and reaping. */
#include "derp/server/server.h"
#include "base/log.h"
#include "base/list.h"
#include "trace/trace.h"

#include <errno.h>
#include <openssl/err.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

/* Reads per readiness event before yielding to other connections. */
#define READS_PER_EVENT 8

/* ---- packet queues ---- */

/* Data bytes of a pooled frame: a RecvPacket or ForwardPacket of a
 * WireGuard datagram (<= 1500 bytes and headers) fits with room. */
#define DERP_PKT_SLAB 2048
/* Frames kept per thread: enough for the bursts of a few busy clients
 * (4 MiB); beyond it frees go back to malloc. */
#define DERP_PKT_CACHE_MAX 2048

static _Thread_local struct derp_pkt *pkt_cache;
static _Thread_local uint32_t pkt_cached;

struct derp_pkt *derp_pkt_new(uint32_t len)
{
	struct derp_pkt *p;
	bool slab = len <= DERP_PKT_SLAB;
	if (slab && pkt_cache) {
		p = pkt_cache;
		pkt_cache = p->next;
		pkt_cached--;
	} else {
		p = malloc(sizeof(*p) + (slab ? DERP_PKT_SLAB : len));
		if (!p)
			return NULL;
	}
	p->next = NULL;
	p->len = len;
	p->slab = slab;
	return p;
}

void derp_pkt_free(struct derp_pkt *p)
{
	if (!p)
		return;
	if (!p->slab || pkt_cached >= DERP_PKT_CACHE_MAX) {
		free(p);
		return;
	}
	p->next = pkt_cache;
	pkt_cache = p;
	pkt_cached++;
}

void derp_pkt_cache_drain(void)
{
	while (pkt_cache) {
		struct derp_pkt *p = pkt_cache;
		pkt_cache = p->next;
		free(p);
	}
	pkt_cached = 0;
}

void derp_pktq_push(struct derp_pktq *q, struct derp_pkt *p) { SPZ_FIFO_PUSH(q->head, q->tail, q->n, p, next); }

struct derp_pkt *derp_pktq_pop(struct derp_pktq *q)
{
	struct derp_pkt *p;
	SPZ_FIFO_POP(q->head, q->tail, q->n, p, next);
	return p;
}

void derp_pktq_clear(struct derp_pktq *q)
{
	struct derp_pkt *p;
	while ((p = derp_pktq_pop(q)) != NULL)
		derp_pkt_free(p);
}

/* Moves all of src to the end of dst. */
static void pktq_splice(struct derp_pktq *dst, struct derp_pktq *src)
{
	if (!src->head)
		return;
	if (dst->tail)
		dst->tail->next = src->head;
	else
		dst->head = src->head;
	dst->tail = src->tail;
	dst->n += src->n;
	src->head = src->tail = NULL;
	src->n = 0;
}

/* ---- events and timers ---- */

void derp_conn_update_events(struct derp_conn *c)
{
	if (c->closing)
		return;
	uint32_t ev = 0;
	if (c->state == CS_M_CONNECTING) {
		ev = EPOLLOUT;
	} else {
		if (!c->paused && (!c->close_after_write || c->lingering))
			ev |= EPOLLIN;
		if (c->out_blocked || c->read_wants_write || (!c->io.handshake_done && c->io.want_write))
			ev |= EPOLLOUT;
		if (c->out_blocked && c->io.want_read)
			ev |= EPOLLIN; /* a TLS write waiting on a read */
	}
	if (ev == c->ev)
		return;
	if (rt_fd_mod(c->srv->rt, c->io.fd, ev) == 0)
		c->ev = ev;
}

static uint64_t next_deadline(const struct derp_conn *c)
{
	uint64_t d[5] = {c->hs_at, c->wdl_at, c->resume_at, c->ka_at, c->rd_at}, m = 0;
	for (int i = 0; i < 5; i++)
		if (d[i] && (!m || d[i] < m))
			m = d[i];
	return m;
}

void derp_conn_arm_timer(struct derp_conn *c)
{
	if (c->closing)
		return;
	uint64_t at = next_deadline(c);
	if (!at) {
		if (c->timer_at)
			rt_timer_cancel(c->timer);
		c->timer_at = 0;
		return;
	}
	if (at == c->timer_at && rt_timer_armed(c->timer))
		return;
	/* Deadlines are in server time; the runtime's timers in real time. */
	uint64_t skew = c->srv->skew_ms;
	rt_timer_arm_at(c->timer, at > skew ? at - skew : 0);
	c->timer_at = at;
}

void derp_conn_deadline(struct derp_conn *c, uint64_t *field, uint64_t at)
{
	*field = at;
	/* Later deadlines are found when the timer fires early; only pull the
	 * timer in when this one comes first (keeps heap work off the hot path). */
	if (at && (!c->timer_at || at < c->timer_at))
		derp_conn_arm_timer(c);
}

void derp_conn_mark_dirty(struct derp_conn *c)
{
	if (c->dirty || c->closing)
		return;
	c->dirty = true;
	c->dirty_next = c->srv->dirty;
	c->srv->dirty = c;
}

void derp_conn_push_ctl(struct derp_conn *c, struct derp_pkt *p)
{
	if (c->closing) {
		derp_pkt_free(p);
		return;
	}
	derp_pktq_push(&c->ctlq, p);
	derp_conn_mark_dirty(c);
}

static void on_resume(struct derp_conn *c);

void derp_conn_check_deadlines(struct derp_conn *c)
{
	uint64_t now = derp_srv_now(c->srv);
	if (c->closing)
		return;
	if (c->hs_at && now >= c->hs_at) {
		derp_conn_close(c, c->lingering ? CR_DONE : CR_HANDSHAKE_TIMEOUT);
	} else if (c->wdl_at && now >= c->wdl_at) {
		derp_conn_close(c, CR_WRITE_TIMEOUT);
	} else if (c->rd_at && now >= c->rd_at) {
		derp_conn_close(c, CR_READ_ERROR); /* mesh link silent for too long */
	} else {
		if (c->ka_at && now >= c->ka_at) {
			c->ka_pending = true;
			c->ka_at = now + c->ka_period;
			derp_conn_mark_dirty(c);
		}
		if (c->resume_at && now >= c->resume_at)
			on_resume(c);
		derp_conn_arm_timer(c);
	}
}

static void conn_on_timer(rt_t *rt, rt_timer_t *t, void *arg)
{
	(void)rt;
	(void)t;
	struct derp_conn *c = arg;
	c->timer_at = 0;
	derp_conn_check_deadlines(c);
	derp_srv_settle(c->srv);
}

/* ---- writing ---- */

static void account_written(struct derp_server *s, const struct derp_pkt *p)
{
	if (p->data[0] == DERP_FRAME_RECV_PACKET) {
		s->st.packets_sent++;
		s->st.bytes_sent += p->len - DERP_HDR_LEN - DERP_KEY_LEN;
	}
}

static void advance_wire(struct derp_conn *c, size_t w)
{
	while (w && c->wire.head) {
		struct derp_pkt *p = c->wire.head;
		size_t rem = p->len - c->wire_off;
		if (w < rem) {
			c->wire_off += (uint32_t)w;
			return;
		}
		w -= rem;
		c->wire_off = 0;
		account_written(c->srv, p);
		derp_pkt_free(derp_pktq_pop(&c->wire));
	}
}

/* Commits queued frames to the wire: control frames (in order), the pong,
 * a keepalive, then disco, then data. */
static void refill_wire(struct derp_conn *c)
{
	pktq_splice(&c->wire, &c->ctlq);
	if (c->pong_pending) {
		struct derp_pkt *p = derp_pkt_new(DERP_HDR_LEN + DERP_PING_LEN);
		if (p) {
			derp_enc_pong(p->data, p->len, c->pong);
			derp_pktq_push(&c->wire, p);
		}
		c->pong_pending = false;
	}
	if (c->ka_pending) {
		struct derp_pkt *p = derp_pkt_new(DERP_HDR_LEN);
		if (p) {
			derp_enc_keep_alive(p->data, p->len);
			derp_pktq_push(&c->wire, p);
			c->srv->st.keepalives_sent++;
		}
		c->ka_pending = false;
	}
	pktq_splice(&c->wire, &c->discoq);
	pktq_splice(&c->wire, &c->dataq);
}

static ssize_t write_plain(struct derp_conn *c)
{
	struct iovec iov[DERP_SRV_IOV_MAX];
	int n = 0;
	size_t off = c->wire_off;
	for (struct derp_pkt *p = c->wire.head; p && n < DERP_SRV_IOV_MAX; p = p->next) {
		iov[n].iov_base = p->data + off;
		iov[n].iov_len = p->len - off;
		off = 0;
		n++;
	}
	/* sendmsg rather than writev: MSG_NOSIGNAL, no SIGPIPE on a reset peer. */
	struct msghdr msg = {.msg_iov = iov, .msg_iovlen = (size_t)n};
	for (;;) {
		ssize_t w = sendmsg(c->io.fd, &msg, MSG_NOSIGNAL);
		if (w >= 0)
			return w;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return -EAGAIN;
		return -errno;
	}
}

static ssize_t write_tls(struct derp_conn *c)
{
	uint8_t *buf = c->srv->wbuf;
	size_t n = 0, off = c->wire_off;
	/* Gather into one record. After -EAGAIN the retry gathers from the same
	 * place, so the leading bytes OpenSSL holds are unchanged; the wire only
	 * grows when it is empty. */
	for (struct derp_pkt *p = c->wire.head; p && n < DERP_SRV_TLS_CHUNK; p = p->next) {
		size_t take = p->len - off;
		if (take > DERP_SRV_TLS_CHUNK - n)
			take = DERP_SRV_TLS_CHUNK - n;
		memcpy(buf + n, p->data + off, take);
		n += take;
		off = 0;
	}
	return derp_io_write(&c->io, buf, n);
}

static uint32_t write_timeout(const struct derp_conn *c)
{
	if (c->link)
		return DERP_SRV_MESH_WRITE_TIMEOUT_MS;
	return c->mesh_ok ? c->srv->cfg.mesh_write_timeout_ms : c->srv->cfg.write_timeout_ms;
}

static void drive_handshake(struct derp_conn *c);

void derp_conn_flush(struct derp_conn *c)
{
	if (c->closing || c->state == CS_M_CONNECTING)
		return;
	if (!c->io.handshake_done) {
		drive_handshake(c);
		return;
	}
	for (;;) {
		if (!c->wire.head) {
			refill_wire(c);
			if (!c->wire.head)
				break;
		}
		ssize_t w = c->io.ssl ? write_tls(c) : write_plain(c);
		if (w == -EAGAIN) {
			if (!c->out_blocked) {
				c->out_blocked = true;
				derp_conn_update_events(c);
			}
			if (!c->wdl_at)
				derp_conn_deadline(c, &c->wdl_at, derp_srv_now(c->srv) + write_timeout(c));
			return;
		}
		if (w < 0) {
			derp_conn_close(c, CR_WRITE_ERROR);
			return;
		}
		advance_wire(c, (size_t)w);
		c->wdl_at = 0; /* progress: the deadline restarts at the next stall */
	}
	c->wdl_at = 0;
	if (c->out_blocked) {
		c->out_blocked = false;
		derp_conn_update_events(c);
	}
	if (c->close_after_write && !c->lingering) {
		/* Closing with unread request bytes would reset the connection and
		 * could destroy the response on its way: shut our side, read
		 * until the client's EOF (or a short deadline), then close. */
		c->lingering = true;
		if (c->io.ssl) {
			SSL_shutdown(c->io.ssl);
			ERR_clear_error();
		}
		shutdown(c->io.fd, SHUT_WR);
		derp_conn_update_events(c);
		derp_conn_deadline(c, &c->hs_at, derp_srv_now(c->srv) + DERP_SRV_LINGER_MS);
	}
}

/* ---- reading ---- */

void derp_conn_feed(struct derp_conn *c, const uint8_t *b, size_t n)
{
	if (!n || c->closing)
		return;
	size_t used = 0;
	if (!c->paused && !c->inlen)
		used = derp_srv_on_stream(c, b, n);
	if (used == n || c->closing)
		return;
	/* Paused for the rate limit: keep the rest until it resumes. */
	size_t rest = n - used;
	if (c->inlen + rest > c->incap) {
		size_t cap = c->inlen + rest;
		uint8_t *nb = realloc(c->inbuf, cap);
		if (!nb) {
			derp_conn_close(c, CR_READ_ERROR);
			return;
		}
		c->inbuf = nb;
		c->incap = (uint32_t)cap;
	}
	memcpy(c->inbuf + c->inlen, b + used, rest);
	c->inlen += (uint32_t)rest;
}

static void on_resume(struct derp_conn *c)
{
	c->paused = false;
	c->resume_at = 0;
	if (c->inlen) {
		uint8_t *buf = c->inbuf;
		size_t n = c->inlen;
		c->inbuf = NULL;
		c->inlen = c->incap = 0;
		derp_conn_feed(c, buf, n);
		free(buf);
	}
	derp_conn_update_events(c);
}

void derp_conn_on_bytes(struct derp_conn *c, const uint8_t *b, size_t n)
{
	switch (c->state) {
	case CS_HTTP: derp_http_on_bytes(c, b, n); break;
	case CS_CLIENT_INFO:
	case CS_ACTIVE: derp_conn_feed(c, b, n); break;
	case CS_M_HTTP:
	case CS_M_ACTIVE: derp_mesh_on_bytes(c, b, n); break;
	default: break; /* CS_HTTP_REPLY: the request is answered; ignore the rest */
	}
}

static void conn_read(struct derp_conn *c)
{
	struct derp_server *s = c->srv;
	c->read_wants_write = false;
	for (int i = 0; i < READS_PER_EVENT || derp_io_pending(&c->io); i++) {
		if (c->closing || c->paused || !c->io.handshake_done)
			return;
		ssize_t n = derp_io_read(&c->io, s->rbuf, DERP_SRV_RBUF);
		if (n == -EAGAIN) {
			if (c->io.want_write) {
				c->read_wants_write = true;
				derp_conn_update_events(c);
			}
			return;
		}
		if (n == 0) {
			derp_conn_close(c, CR_EOF);
			return;
		}
		if (n < 0) {
			derp_conn_close(c, CR_READ_ERROR);
			return;
		}
		if (c->link && c->rd_at)
			c->rd_at = derp_srv_now(s) + 2 * DERP_KEEPALIVE_MS; /* the Go client's 120 s */
		derp_conn_on_bytes(c, s->rbuf, (size_t)n);
	}
}

static void drive_handshake(struct derp_conn *c)
{
	int rc = derp_io_handshake(&c->io);
	if (rc < 0) {
		derp_conn_close(c, c->link ? CR_READ_ERROR : CR_HTTP);
		return;
	}
	if (rc == 0) {
		derp_conn_update_events(c);
		return;
	}
	if (c->link) {
		derp_mesh_on_connected(c);
	} else {
		c->state = CS_HTTP;
		derp_conn_update_events(c);
		conn_read(c); /* the request may already be buffered */
	}
}

static void conn_on_event(rt_t *rt, int fd, uint32_t events, void *arg)
{
	(void)rt;
	(void)fd;
	struct derp_conn *c = arg;
	struct derp_server *s = c->srv;
	if (c->closing)
		return;
	if (c->state == CS_M_CONNECTING) {
		derp_mesh_on_connected(c);
	} else if (!c->io.handshake_done) {
		drive_handshake(c);
	} else {
		if (events & EPOLLOUT) {
			if (c->read_wants_write)
				conn_read(c);
			derp_conn_flush(c);
		}
		if (!c->closing && (events & EPOLLIN) && c->out_blocked && c->io.want_read)
			derp_conn_flush(c); /* a TLS write that waited on a read */
		if (!c->closing && (events & (EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLRDHUP)))
			conn_read(c);
	}
	derp_srv_settle(s);
}

/* ---- lifecycle ---- */

struct derp_conn *derp_conn_new(struct derp_server *s, int fd, SSL *client_ssl, SSL_CTX *server_ctx)
{
	struct derp_conn *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->srv = s;
	if (client_ssl) {
		derp_io_init_client(&c->io, fd, client_ssl);
	} else if (derp_io_init_server(&c->io, fd, server_ctx) < 0) {
		free(c);
		return NULL;
	}
	c->timer = rt_timer_new(s->rt, conn_on_timer, c);
	c->ev = EPOLLIN;
	if (!c->timer || rt_fd_add(s->rt, fd, c->ev, conn_on_event, c) < 0) {
		rt_timer_free(c->timer);
		if (c->io.ssl && !client_ssl)
			SSL_free(c->io.ssl);
		free(c);
		return NULL;
	}
	derp_parser_init(&c->parser, DERP_ROLE_SERVER);
	c->next = s->conns;
	if (s->conns)
		s->conns->prev = c;
	s->conns = c;
	s->st.connections++;
	return c;
}

static void count_close(struct derp_server *s, enum derp_close_reason why)
{
	switch (why) {
	case CR_PROTOCOL: s->st.close_protocol_error++; break;
	case CR_HANDSHAKE: s->st.close_handshake_error++; break;
	case CR_HANDSHAKE_TIMEOUT: s->st.close_handshake_timeout++; break;
	case CR_WRITE_TIMEOUT: s->st.close_write_timeout++; break;
	case CR_NOT_ALLOWED: s->st.close_not_allowed++; break;
	case CR_PERMISSION: s->st.close_permission++; break;
	case CR_CLOSE_PEER: s->st.close_peer++; break;
	case CR_HTTP: s->st.close_http_error++; break;
	default: break;
	}
}

void derp_conn_close(struct derp_conn *c, enum derp_close_reason why)
{
	struct derp_server *s = c->srv;
	if (c->closing)
		return;
	c->closing = true;
	count_close(s, why);
	spz_log(SPZ_LOG_DEBUG, "derp", "server %u: closing connection fd %d (state %d, reason %d)", s->port, c->io.fd,
		c->state, why);
	if (c->state == CS_ACTIVE)
		derp_peer_unregister(c);
	if (c->watcher)
		derp_watch_del(c);
	/* Packets still queued for this client will never be written. */
	uint64_t lost = c->dataq.n + c->discoq.n;
	for (struct derp_pkt *p = c->wire.head; p; p = p->next)
		lost += p->data[0] == DERP_FRAME_RECV_PACKET;
	TR_TAP(lost, TR_HOP_DS, TR_OBJ(s),
	       why == CR_WRITE_ERROR || why == CR_WRITE_TIMEOUT ? TR_R_DS_WRITE_ERROR : TR_R_DS_GONE, lost);
	if (why == CR_WRITE_ERROR || why == CR_WRITE_TIMEOUT)
		s->st.drop_write_error += lost;
	else
		s->st.drop_gone_disconnected += lost;
	c->state = CS_DEAD;
	rt_fd_del(s->rt, c->io.fd);
	derp_io_close(&c->io);
	rt_timer_cancel(c->timer);
	c->timer_at = 0;
	if (c->link)
		derp_mesh_on_closed(c);
	SPZ_DLIST_UNLINK(s->conns, c, prev, next);
	s->st.connections--;
	c->dead_next = s->dead;
	s->dead = c;
}

static void conn_free(struct derp_conn *c)
{
	derp_pktq_clear(&c->ctlq);
	derp_pktq_clear(&c->discoq);
	derp_pktq_clear(&c->dataq);
	derp_pktq_clear(&c->wire);
	derp_parser_free(&c->parser);
	free(c->inbuf);
	rt_timer_free(c->timer);
	free(c);
}

void derp_srv_settle(struct derp_server *s)
{
	while (s->dirty) {
		struct derp_conn *c = s->dirty;
		s->dirty = c->dirty_next;
		c->dirty_next = NULL;
		c->dirty = false;
		/* A blocked socket is retried on EPOLLOUT, not once per new frame. */
		if (!c->closing && !c->out_blocked)
			derp_conn_flush(c);
	}
	while (s->dead) {
		struct derp_conn *c = s->dead;
		s->dead = c->dead_next;
		conn_free(c);
	}
}
