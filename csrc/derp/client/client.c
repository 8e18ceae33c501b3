/* derp client: lifecycle, the reconnect state machine, timers, the API.
 *
 * States: BACKOFF -> RESOLVING -> CONNECTING -> (TLS) -> UPGRADING ->
 * CONNECTED, and from anywhere back to BACKOFF on failure (derp_cl_fail).
 * One timer (t_main) serves every deadline of the current state: the
 * backoff wake-up, the connect budget and per-address dial limit, and,
 * once connected, the read timeout, ping timeouts and idle pings. */
#include "derp/client/client_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#include <arpa/inet.h>
#include <sodium.h>

#include "base/log.h"
#include "impair/impair.h"
#include "trace/trace.h"

static const char *state_name(int s)
{
	switch (s) {
	case DERP_CLIENT_BACKOFF: return "backoff";
	case DERP_CLIENT_RESOLVING: return "resolving";
	case DERP_CLIENT_CONNECTING: return "connecting";
	case DERP_CLIENT_TLS: return "TLS handshake";
	case DERP_CLIENT_UPGRADING: return "DERP handshake";
	case DERP_CLIENT_CONNECTED: return "connected";
	case DERP_CLIENT_CLOSED: return "closed";
	case DERP_CLIENT_REFUSED: return "refused";
	default: return "?";
	}
}

uint32_t derp_client_backoff_ms(uint32_t failures, uint32_t base_ms, uint32_t max_ms, uint32_t rnd)
{
	uint64_t n = failures;
	uint64_t d = n * n * (uint64_t)base_ms;
	if (d > max_ms)
		d = max_ms;
	/* d * (0.5 + rnd / 2^32), in integers: [d/2, 3d/2). */
	return (uint32_t)(d / 2 + ((d * (uint64_t)rnd) >> 32));
}

/* ---- connection teardown and the retry schedule ---- */

static void arm_main(struct derp_client *c);

static void teardown(struct derp_client *c)
{
	c->gen++;
	if (c->res) {
		rt_fd_del(c->rt, derp_resolve_fd(c->res));
		derp_resolve_release(c->res);
		c->res = NULL;
	}
	derp_cl_close_io(c);
	if (c->cp) {
		if (c->in_input) {
			/* The parser's frame is still in use up the stack. */
			c->cp->halt = true;
			c->cp_zombie = c->cp;
		} else {
			derp_cp_free(c->cp);
			free(c->cp);
		}
		c->cp = NULL;
	}
	memset(c->pings, 0, sizeof(c->pings));
	c->tb_rate = 0;
}

static void refused(struct derp_client *c)
{
	c->state = DERP_CLIENT_REFUSED;
	rt_timer_cancel(c->t_main);
	spz_log(SPZ_LOG_WARNING, "derp", "client %s: %s; not retrying (fix it, then reconnect)", c->url.host_header,
		c->last_error);
	struct derp_client_event ev = {.type = DERP_EV_REFUSED, .text = c->last_error};
	ev.text_len = strlen(c->last_error);
	if (c->ops.on_event)
		c->ops.on_event(c->arg, &ev);
}

static int opt_err(char *err, size_t errlen, const char *msg);
static int parse_nodes(struct derp_client *c, const char *list, char *err, size_t errlen);

static void vfail(struct derp_client *c, int err, const char *fmt, va_list ap)
{
	vsnprintf(c->last_error, sizeof(c->last_error), fmt, ap);
	c->last_errno = err;
	if (c->state == DERP_CLIENT_CLOSED || c->state == DERP_CLIENT_BACKOFF || c->state == DERP_CLIENT_REFUSED)
		return;
	bool was_connected = c->state == DERP_CLIENT_CONNECTED;
	spz_log(SPZ_LOG_DEBUG, "derp", "client %s: %s: %s", c->url.host_header, state_name(c->state), c->last_error);
	teardown(c);
	if (was_connected) {
		c->st.disconnects++;
		c->lost_after_connect = true;
		/* Every user (DerpClient, gateway, device bind) wants this one said. */
		spz_log(SPZ_LOG_WARNING, "derp", "connection to DERP server %s lost (%s); reconnecting",
			c->url.host_header, c->last_error);
	} else {
		c->st.connect_failures++;
	}
	if (err == EACCES) {
		c->st.refusals++;
		c->refused_in_row++;
	} else {
		c->refused_in_row = 0;
	}
	if (c->failures < 1000000)
		c->failures++;
	if (c->refused_in_row >= DERP_CLIENT_REFUSALS_STOP) {
		refused(c);
		return;
	}
	if (c->nnodes > 1) {
		/* Fail over: the next attempt goes to the region's next node. */
		c->node = (c->node + 1) % c->nnodes;
		c->url = c->nodes[c->node];
	}
	uint32_t delay = derp_client_backoff_ms(c->failures, c->o.backoff_base_ms, c->o.backoff_max_ms,
						randombytes_random());
	c->state = DERP_CLIENT_BACKOFF;
	rt_timer_arm_in(c->t_main, delay);
	if (was_connected && c->ops.on_state)
		c->ops.on_state(c->arg, false, c->last_error);
}

void derp_cl_fail(struct derp_client *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vfail(c, 0, fmt, ap);
	va_end(ap);
}

void derp_cl_fail_err(struct derp_client *c, int err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vfail(c, err, fmt, ap);
	va_end(ap);
}

/* ---- attempts ---- */

static void on_resolved(rt_t *rt, int fd, uint32_t events, void *arg)
{
	(void)rt;
	(void)fd;
	(void)events;
	struct derp_client *c = arg;
	c->busy++;
	char err[200];
	int n = derp_resolve_result(c->res, c->addrs, c->alens, DERP_CLIENT_MAX_ADDRS, err, sizeof(err));
	rt_fd_del(c->rt, derp_resolve_fd(c->res));
	derp_resolve_release(c->res);
	c->res = NULL;
	if (n < 0) {
		derp_cl_fail_err(c, EHOSTUNREACH, "%s", err);
	} else {
		c->naddr = n;
		c->ai = 0;
		derp_cl_dial_next(c);
	}
	derp_cl_leave(c);
}

static void set_port(struct sockaddr_storage *ss, uint16_t port)
{
	if (ss->ss_family == AF_INET6)
		((struct sockaddr_in6 *)ss)->sin6_port = htons(port);
	else
		((struct sockaddr_in *)ss)->sin_port = htons(port);
}

static void start_attempt(struct derp_client *c)
{
	c->st.connect_attempts++;
	c->attempt_deadline = rt_now_ms() + c->o.connect_timeout_ms;
	c->naddr = c->ai = 0;
	c->state = DERP_CLIENT_RESOLVING;
	rt_timer_arm_at(c->t_main, c->attempt_deadline);
	if (c->url.host_is_ip) {
		struct sockaddr_storage *ss = &c->addrs[0];
		memset(ss, 0, sizeof(*ss));
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
		struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
		if (inet_pton(AF_INET6, c->url.host, &s6->sin6_addr) == 1) {
			s6->sin6_family = AF_INET6;
			c->alens[0] = sizeof(*s6);
		} else {
			inet_pton(AF_INET, c->url.host, &s4->sin_addr);
			s4->sin_family = AF_INET;
			c->alens[0] = sizeof(*s4);
		}
		set_port(ss, c->url.port);
		c->naddr = 1;
		derp_cl_dial_next(c);
		return;
	}
	int rc;
	c->res = derp_resolve_start(c->url.host, c->url.port, &rc);
	if (!c->res) {
		derp_cl_fail(c, "cannot start a resolver thread: %s", strerror(-rc));
		return;
	}
	rc = rt_fd_add(c->rt, derp_resolve_fd(c->res), EPOLLIN, on_resolved, c);
	if (rc < 0) {
		derp_resolve_release(c->res);
		c->res = NULL;
		derp_cl_fail(c, "cannot watch the resolver: %s", strerror(-rc));
	}
}

/* ---- the protocol core's callbacks ---- */

static int cp_write(void *arg, const uint8_t *buf, size_t len) { return derp_cl_write(arg, buf, len); }

static void cp_connected(void *arg, const uint8_t server_pub[32], const struct derp_server_info *si)
{
	(void)server_pub;
	struct derp_client *c = arg;
	c->state = DERP_CLIENT_CONNECTED;
	c->failures = 0;
	c->st.connects++;
	if (c->lost_after_connect)
		c->st.reconnects++;
	c->last_rx_ms = c->last_idle_ping_ms = rt_now_ms();
	c->tb_rate = si->token_bucket_bytes_per_second > 0 ? si->token_bucket_bytes_per_second : 0;
	c->tb_burst = si->token_bucket_bytes_burst > 0 ? si->token_bucket_bytes_burst : c->tb_rate;
	c->tb_tokens = (double)c->tb_burst;
	c->tb_last_ns = rt_now_ns();
	spz_log(SPZ_LOG_INFO, "derp", "%s DERP server %s", c->lost_after_connect ? "reconnected to" : "connected to",
		c->url.host_header);
	if (c->has_preferred) {
		uint8_t f[DERP_HDR_LEN + 1];
		derp_cl_write(c, f, derp_enc_note_preferred(f, sizeof(f), c->preferred));
	}
	derp_cl_queue_drain(c);
	derp_cl_note_congestion(c); /* bytes written before the handshake count too */
	arm_main(c);
	uint64_t gen = c->gen;
	if (c->ops.on_state)
		c->ops.on_state(c->arg, true, NULL);
	if (gen == c->gen)
		derp_cl_notify_writable(c);
}

static void cp_packet(void *arg, const uint8_t src[32], const uint8_t *data, size_t len)
{
	struct derp_client *c = arg;
	c->st.packets_recv++;
	c->st.bytes_recv += len;
	TR_TAP(derp, TR_HOP_DC_RX, tr_key_id(c->pub), src, DERP_FRAME_RECV_PACKET, src, data, len);
	if (c->imp[IMP_IN])
		imp_input(c->imp[IMP_IN], src, DERP_CLIENT_KEY_LEN, data, len);
	else if (c->ops.on_packet)
		c->ops.on_packet(c->arg, src, data, len);
}

static void cp_event(void *arg, const struct derp_client_event *ev)
{
	struct derp_client *c = arg;
	if (ev->type == DERP_EV_PONG) {
		/* Only pongs for our own pings count; others are ignored. */
		for (int i = 0; i < DERP_CLIENT_MAX_PINGS; i++) {
			struct derp_ping *p = &c->pings[i];
			if (!p->used || sodium_memcmp(p->data, ev->ping, 8) != 0)
				continue;
			p->used = false;
			c->st.pongs_recv++;
			arm_main(c); /* the idle-ping schedule restarts from now */
			struct derp_client_event e = *ev;
			e.rtt_us = (rt_now_ns() - p->sent_ns) / 1000;
			if (c->ops.on_event)
				c->ops.on_event(c->arg, &e);
			return;
		}
		return;
	}
	if (c->ops.on_event)
		c->ops.on_event(c->arg, ev);
}

static const struct derp_cp_ops cp_ops = {
	.write = cp_write,
	.connected = cp_connected,
	.packet = cp_packet,
	.event = cp_event,
};

void derp_cl_feed(struct derp_client *c, const uint8_t *buf, size_t len)
{
	struct derp_cproto *cp = c->cp;
	if (!cp)
		return;
	c->in_input = true;
	int rc = derp_cp_input(cp, buf, len, &cp_ops, c);
	c->in_input = false;
	c->st.bad_frames += cp->n.bad_frames;
	c->st.keepalives_recv += cp->n.keepalives;
	c->st.pings_recv += cp->n.pings_recv;
	c->st.unknown_frames += cp->n.unknown_frames;
	memset(&cp->n, 0, sizeof(cp->n));
	if (c->cp_zombie) {
		derp_cp_free(c->cp_zombie);
		free(c->cp_zombie);
		c->cp_zombie = NULL;
		return;
	}
	if (rc < 0) {
		c->st.protocol_errors++;
		derp_cl_fail_err(c, EPROTO, "%s", cp->err[0] ? cp->err : "protocol error");
	}
}

void derp_cl_start_upgrade(struct derp_client *c)
{
	c->cp = calloc(1, sizeof(*c->cp));
	if (!c->cp) {
		derp_cl_fail(c, "out of memory");
		return;
	}
	derp_cp_init(c->cp, c->priv, c->pub, c->o.has_server_key ? c->o.server_key : NULL);
	c->state = DERP_CLIENT_UPGRADING;
	char req[600];
	size_t n = derp_http_upgrade_request(req, sizeof(req), c->url.host_header, false, NULL);
	if (n == 0 || derp_cl_write(c, (const uint8_t *)req, n) < 0) {
		derp_cl_fail(c, "cannot build the upgrade request");
		return;
	}
	derp_cl_set_interest(c);
}

/* ---- sending ---- */

/* Server's token bucket (ServerInfo), as Go's client applies it: a
 * SendPacket over budget is dropped, not delayed. */
static bool tb_allow(struct derp_client *c, size_t len)
{
	if (c->tb_rate <= 0)
		return true;
	uint64_t now = rt_now_ns();
	c->tb_tokens += (double)(now - c->tb_last_ns) * (double)c->tb_rate / 1e9;
	c->tb_last_ns = now;
	if (c->tb_tokens > (double)c->tb_burst)
		c->tb_tokens = (double)c->tb_burst;
	double cost = (double)(DERP_HDR_LEN + DERP_KEY_LEN + len);
	if (c->tb_tokens < cost)
		return false;
	c->tb_tokens -= cost;
	return true;
}

bool derp_cl_encode_send(struct derp_client *c, const uint8_t dst[32], const uint8_t *data, size_t len)
{
	if (!tb_allow(c, len)) {
		TR_TAP(drop, TR_HOP_DC_TX, tr_key_id(c->pub), dst, TR_R_DC_RATE_LIMIT, data, len);
		c->st.drops_rate_limit++;
		return false;
	}
	size_t need = DERP_SEND_FRAME_LEN(len);
	if (derp_cl_wbuf_reserve(c, need) < 0) {
		TR_TAP(drop, TR_HOP_DC_TX, tr_key_id(c->pub), dst, TR_R_DC_BUFFER_FULL, data, len);
		c->st.drops_queue_full++;
		return false;
	}
	size_t n = derp_enc_send_packet(c->wbuf + c->whead + c->wlen, need, dst, data, len);
	TR_TAP(frame, TR_HOP_DC_TX, tr_key_id(c->pub), dst, c->wbuf + c->whead + c->wlen, n);
	c->wlen += n;
	c->st.packets_sent++;
	c->st.bytes_sent += len;
	derp_cl_note_congestion(c);
	derp_cl_schedule_flush(c);
	return true;
}

static void send_now(derp_client_t *c, const uint8_t dst[32], const uint8_t *data, size_t len)
{
	if (derp_client_writable(c))
		derp_cl_encode_send(c, dst, data, len);
	else
		derp_cl_queue_push(c, dst, data, len);
	derp_cl_note_congestion(c);
}

int derp_client_send(derp_client_t *c, const uint8_t dst[32], const uint8_t *data, size_t len)
{
	if (c->closing || c->state == DERP_CLIENT_CLOSED)
		return -ESHUTDOWN;
	if (len > DERP_MAX_PACKET) {
		TR_TAP(drop, TR_HOP_DC_TX, tr_key_id(c->pub), dst, TR_R_DC_TOO_BIG, data, len);
		c->st.drops_too_big++;
		return -EMSGSIZE;
	}
	if (c->imp[IMP_OUT])
		imp_input(c->imp[IMP_OUT], dst, DERP_CLIENT_KEY_LEN, data, len);
	else
		send_now(c, dst, data, len);
	return 0;
}

/* ---- impairments (csrc/impair/): released packets re-enter here, from
 * the engine's timer, as a loop entry point of their own ---- */

static void imp_send(void *ctx, const void *addr, size_t alen, const uint8_t *data, size_t len)
{
	(void)alen;
	derp_client_t *c = ctx;
	if (c->closing || c->state == DERP_CLIENT_CLOSED)
		return;
	c->busy++;
	send_now(c, addr, data, len);
	derp_cl_leave(c);
}

static void imp_recv(void *ctx, const void *addr, size_t alen, const uint8_t *data, size_t len)
{
	(void)alen;
	derp_client_t *c = ctx;
	if (c->closing || !c->ops.on_packet)
		return;
	c->busy++;
	c->ops.on_packet(c->arg, addr, data, len);
	derp_cl_leave(c);
}

int derp_client_impair(derp_client_t *c, int dir, int op, const struct imp_config *cfg, struct imp_stats *out)
{
	if (c->closing)
		return -ESHUTDOWN;
	return imp_slot_op(&c->imp[dir], c->rt, op, cfg, dir == IMP_OUT ? imp_send : imp_recv, c, out);
}

bool derp_client_connected(const derp_client_t *c) { return c->state == DERP_CLIENT_CONNECTED; }

bool derp_client_writable(const derp_client_t *c)
{
	return c->state == DERP_CLIENT_CONNECTED && !c->qhead && c->wlen < c->o.write_buffer_max;
}

bool derp_client_congested(const derp_client_t *c)
{
	return c->state == DERP_CLIENT_CONNECTED && !derp_client_writable(c);
}

void derp_cl_note_congestion(struct derp_client *c)
{
	if (derp_client_congested(c))
		c->congested_notify = true;
}

void derp_cl_notify_writable(struct derp_client *c)
{
	if (!c->congested_notify || !derp_client_writable(c))
		return;
	c->congested_notify = false;
	if (c->ops.on_writable)
		c->ops.on_writable(c->arg);
}

int derp_client_ping(derp_client_t *c, const uint8_t data[8])
{
	if (c->state != DERP_CLIENT_CONNECTED)
		return -ENOTCONN;
	struct derp_ping *slot = NULL;
	for (int i = 0; i < DERP_CLIENT_MAX_PINGS && !slot; i++)
		if (!c->pings[i].used)
			slot = &c->pings[i];
	if (!slot)
		return -EBUSY;
	uint8_t f[DERP_HDR_LEN + DERP_PING_LEN];
	int rc = derp_cl_write(c, f, derp_enc_ping(f, sizeof(f), data));
	if (rc < 0)
		return rc;
	slot->used = true;
	memcpy(slot->data, data, 8);
	slot->sent_ns = rt_now_ns();
	c->st.pings_sent++;
	arm_main(c);
	return 0;
}

int derp_client_note_preferred(derp_client_t *c, bool preferred)
{
	if (c->closing)
		return -ESHUTDOWN;
	c->has_preferred = true;
	c->preferred = preferred;
	if (c->state != DERP_CLIENT_CONNECTED)
		return 0;
	uint8_t f[DERP_HDR_LEN + 1];
	return derp_cl_write(c, f, derp_enc_note_preferred(f, sizeof(f), preferred));
}

void derp_client_reconnect(derp_client_t *c)
{
	if (c->closing)
		return;
	c->busy++;
	if (c->state == DERP_CLIENT_BACKOFF || c->state == DERP_CLIENT_REFUSED) {
		/* After a refusal: the caller says it fixed the cause. */
		c->state = DERP_CLIENT_BACKOFF;
		c->refused_in_row = 0;
		c->failures = 0;
		rt_timer_arm_in(c->t_main, 0);
	} else {
		derp_cl_fail(c, "reconnect requested");
		/* An explicit reconnect is no failure of the server's: retry now. */
		c->failures = 0;
		rt_timer_arm_in(c->t_main, 0);
	}
	derp_cl_leave(c);
}

int derp_client_set_url(derp_client_t *c, const char *url, char *err, size_t errlen)
{
	if (c->closing)
		return -ESHUTDOWN;
	struct derp_client tmp; /* parse first: on error nothing changes */
	int rc = parse_nodes(&tmp, url, err, errlen);
	if (rc < 0)
		return rc;
	if (tmp.url.tls != c->url.tls)
		return opt_err(err, errlen, "url: the new relay must use the same scheme (http/https) as the old");
	c->busy++;
	if (c->state != DERP_CLIENT_BACKOFF)
		derp_cl_fail(c, "home relay changed");
	memcpy(c->nodes, tmp.nodes, sizeof(c->nodes));
	c->nnodes = tmp.nnodes;
	c->node = 0;
	c->url = c->nodes[0];
	c->failures = 0;
	if (!c->closing)
		rt_timer_arm_in(c->t_main, 0);
	derp_cl_leave(c);
	return 0;
}

/* ---- timers ---- */

int derp_client_liveness(uint64_t now_ms, uint64_t last_rx_ms, uint64_t last_idle_ping_ms, uint64_t oldest_ping_ms,
			 uint32_t read_timeout_ms, uint32_t ping_timeout_ms, uint32_t idle_ping_ms, uint64_t *next_ms)
{
	uint64_t dead_at = last_rx_ms + read_timeout_ms;
	if (now_ms >= dead_at)
		return DERP_LIVE_READ_TIMEOUT;
	uint64_t next = dead_at;
	if (oldest_ping_ms != UINT64_MAX) {
		uint64_t ping_dead = oldest_ping_ms + ping_timeout_ms;
		if (now_ms >= ping_dead)
			return DERP_LIVE_PING_TIMEOUT;
		if (ping_dead < next)
			next = ping_dead;
	} else if (idle_ping_ms) {
		/* Quiet since the later of the last frame and our last idle ping. */
		uint64_t base = last_rx_ms > last_idle_ping_ms ? last_rx_ms : last_idle_ping_ms;
		if (now_ms >= base + idle_ping_ms)
			return DERP_LIVE_SEND_PING;
		if (base + idle_ping_ms < next)
			next = base + idle_ping_ms;
	}
	*next_ms = next;
	return DERP_LIVE_OK;
}

static uint64_t oldest_ping_ms(const struct derp_client *c)
{
	uint64_t oldest = UINT64_MAX;
	for (int i = 0; i < DERP_CLIENT_MAX_PINGS; i++)
		if (c->pings[i].used && c->pings[i].sent_ns / 1000000 < oldest)
			oldest = c->pings[i].sent_ns / 1000000;
	return oldest;
}

/* Applies the liveness rule now: drops, pings, or re-arms t_main. */
static void liveness(struct derp_client *c)
{
	for (int round = 0; round < 2; round++) {
		uint64_t next = 0;
		int act = derp_client_liveness(rt_now_ms(), c->last_rx_ms, c->last_idle_ping_ms, oldest_ping_ms(c),
					       c->o.read_timeout_ms, c->o.ping_timeout_ms, c->o.idle_ping_ms, &next);
		switch (act) {
		case DERP_LIVE_OK: rt_timer_arm_at(c->t_main, next); return;
		case DERP_LIVE_READ_TIMEOUT:
			c->st.read_timeouts++;
			derp_cl_fail_err(c, ETIMEDOUT, "no frame from the server for %u ms", c->o.read_timeout_ms);
			return;
		case DERP_LIVE_PING_TIMEOUT:
			c->st.ping_timeouts++;
			derp_cl_fail_err(c, ETIMEDOUT, "ping unanswered for %u ms", c->o.ping_timeout_ms);
			return;
		case DERP_LIVE_SEND_PING: {
			uint8_t data[8];
			randombytes_buf(data, sizeof(data));
			c->last_idle_ping_ms = rt_now_ms();
			if (derp_client_ping(c, data) < 0)
				return;
			break; /* round 2 arms the timer for the new ping's deadline */
		}
		}
	}
}

/* Re-arms t_main for the connection's next deadline; acting is left to
 * the timer callback, so callers (ping, pong) never see a teardown. */
static void arm_main(struct derp_client *c)
{
	if (c->state != DERP_CLIENT_CONNECTED)
		return;
	uint64_t now = rt_now_ms(), next = now;
	int act = derp_client_liveness(now, c->last_rx_ms, c->last_idle_ping_ms, oldest_ping_ms(c),
				       c->o.read_timeout_ms, c->o.ping_timeout_ms, c->o.idle_ping_ms, &next);
	rt_timer_arm_at(c->t_main, act == DERP_LIVE_OK ? next : now);
}

/* What a connect attempt stuck in its current state most likely means. */
static const char *timeout_hint(const struct derp_client *c)
{
	switch (c->state) {
	case DERP_CLIENT_RESOLVING: return "the host name did not resolve in time";
	case DERP_CLIENT_CONNECTING: return "no answer to the TCP connect (host down, or a firewall dropping it?)";
	case DERP_CLIENT_TLS: return "the server did not answer the TLS handshake (a plain relay? use http://)";
	default: return "the server did not answer the DERP handshake (is the URL a DERP server?)";
	}
}

static void on_main_timer(rt_t *rt, rt_timer_t *t, void *arg)
{
	(void)rt;
	(void)t;
	struct derp_client *c = arg;
	c->busy++;
	uint64_t now = rt_now_ms();
	switch (c->state) {
	case DERP_CLIENT_BACKOFF: start_attempt(c); break;
	case DERP_CLIENT_RESOLVING:
	case DERP_CLIENT_CONNECTING:
	case DERP_CLIENT_TLS:
	case DERP_CLIENT_UPGRADING:
		if (now >= c->attempt_deadline) {
			derp_cl_fail_err(c, ETIMEDOUT, "connect timed out after %u ms (%s): %s",
					 c->o.connect_timeout_ms, state_name(c->state), timeout_hint(c));
		} else if (c->state == DERP_CLIENT_CONNECTING && now >= c->dial_deadline) {
			/* This address is slow: go on with the next one. */
			if (c->events)
				rt_fd_del(c->rt, c->io.fd);
			derp_io_close(&c->io);
			c->io.fd = -1;
			c->events = 0;
			c->ai++;
			rt_timer_arm_at(c->t_main, c->attempt_deadline);
			if (c->ai < c->naddr)
				derp_cl_dial_next(c);
			else
				derp_cl_fail_err(c, ETIMEDOUT, "connect timed out: %s", timeout_hint(c));
		} else {
			rt_timer_arm_at(c->t_main, c->attempt_deadline);
		}
		break;
	case DERP_CLIENT_CONNECTED: liveness(c); break;
	default: break;
	}
	derp_cl_leave(c);
}

static void on_io_timer(rt_t *rt, rt_timer_t *t, void *arg)
{
	(void)rt;
	(void)t;
	struct derp_client *c = arg;
	c->busy++;
	derp_cl_io_deferred(c);
	derp_cl_leave(c);
}

/* ---- lifecycle ---- */

static int opt_err(char *err, size_t errlen, const char *msg)
{
	if (err && errlen)
		snprintf(err, errlen, "%s", msg);
	return -EINVAL;
}

static int parse_pin(const char *pin, uint8_t out[32])
{
	if (strncasecmp(pin, "sha256-raw:", 11) == 0)
		pin += 11;
	if (strlen(pin) != 64)
		return -EINVAL;
	size_t bin_len;
	if (sodium_hex2bin(out, 32, pin, 64, NULL, &bin_len, NULL) != 0 || bin_len != 32)
		return -EINVAL;
	return 0;
}

/* A node list: several words, each starting with a scheme. */
static bool is_node_list(const char *list, const char *seps)
{
	int words = 0;
	for (const char *p = list + strspn(list, seps); *p; p += strspn(p, seps)) {
		if (strncmp(p, "http://", 7) != 0 && strncmp(p, "https://", 8) != 0)
			return false;
		p += strcspn(p, seps);
		words++;
	}
	return words > 1;
}

/* One URL, or a region's nodes as URLs separated by spaces or commas (in
 * DERP-map order), all http:// or all https://. Anything else is one URL
 * (whose parser says what is wrong with it). */
static int parse_nodes(struct derp_client *c, const char *list, char *err, size_t errlen)
{
	static const char seps[] = " ,\t\n";
	if (!is_node_list(list, seps)) {
		int rc = derp_url_parse(list, &c->nodes[0], err, errlen);
		if (rc < 0)
			return rc;
		c->nnodes = 1;
		c->node = 0;
		c->url = c->nodes[0];
		return 0;
	}
	char one[1024];
	int n = 0;
	for (const char *p = list + strspn(list, seps); *p; p += strspn(p, seps)) {
		size_t len = strcspn(p, seps);
		if (n == DERP_CLIENT_MAX_NODES)
			return opt_err(err, errlen, "url: more than 8 node URLs");
		if (len >= sizeof(one))
			return opt_err(err, errlen, "url: a node URL is too long");
		memcpy(one, p, len);
		one[len] = 0;
		int rc = derp_url_parse(one, &c->nodes[n], err, errlen);
		if (rc < 0)
			return rc;
		if (n && c->nodes[n].tls != c->nodes[0].tls)
			return opt_err(err, errlen, "url: the nodes must be all http:// or all https://");
		n++;
		p += len;
	}
	c->nnodes = n;
	c->node = 0;
	c->url = c->nodes[0];
	return 0;
}

/* Fills the options left 0 with their defaults (derp_client_py.h). */
static void default_opts(struct derp_client_opts *o)
{
#define DEFAULT(field, value) o->field = o->field ? o->field : (value)
	DEFAULT(queue_size, 256);
	DEFAULT(write_buffer_max, 512 * 1024);
	DEFAULT(connect_timeout_ms, 10000);
	DEFAULT(dial_timeout_ms, 1500);
	DEFAULT(read_timeout_ms, 120000);
	DEFAULT(ping_timeout_ms, 5000);
	DEFAULT(backoff_base_ms, 10);
	DEFAULT(backoff_max_ms, 5000);
#undef DEFAULT
}

static int setup(struct derp_client *c, const char *url, const uint8_t priv[32], const struct derp_client_opts *opts,
		 char *err, size_t errlen)
{
	int rc = parse_nodes(c, url, err, errlen);
	if (rc < 0)
		return rc;
	if (!priv || sodium_is_zero(priv, 32))
		return opt_err(err, errlen, "private key: must be 32 bytes, not all zero");
	memcpy(c->priv, priv, 32);
	if (derp_key_public(c->priv, c->pub) < 0)
		return opt_err(err, errlen, "private key: invalid");
	if (opts)
		c->o = *opts;
	c->o.ca_file = c->o.pin_sha256 = c->o.server_name = NULL;
	default_opts(&c->o);
	if (c->o.has_server_key && sodium_is_zero(c->o.server_key, 32))
		return opt_err(err, errlen, "server_key: all zero");
	if (c->o.note_preferred) {
		c->has_preferred = true;
		c->preferred = true;
	}
	if (opts && opts->server_name && *opts->server_name) {
		if (strlen(opts->server_name) > 253)
			return opt_err(err, errlen, "server_name: too long");
		c->server_name = strdup(opts->server_name);
		if (!c->server_name)
			return -ENOMEM;
	}
	bool insecure = opts && opts->insecure;
	if (opts && opts->pin_sha256 && *opts->pin_sha256) {
		if (parse_pin(opts->pin_sha256, c->pin) < 0)
			return opt_err(err, errlen, "pin_sha256: must be 64 hex digits (optionally after sha256-raw:)");
		c->has_pin = true;
	}
	const char *ca = opts && opts->ca_file && *opts->ca_file ? opts->ca_file : NULL;
	if ((ca || c->has_pin || insecure) && !c->url.tls)
		return opt_err(err, errlen, "ca_file/pin_sha256/insecure need an https:// URL");
	if (c->url.tls) {
		/* A pin replaces chain and name checks (as Go does for sha256-raw). */
		char msg[200];
		c->ssl_ctx = derp_tls_client_ctx(ca, NULL, insecure || c->has_pin, msg, sizeof(msg));
		if (!c->ssl_ctx) {
			if (err && errlen)
				snprintf(err, errlen, "TLS setup: %s", msg);
			return -EINVAL;
		}
	}
	return 0;
}

derp_client_t *derp_client_new(rt_t *rt, const char *url, const uint8_t priv[32], const struct derp_client_opts *opts,
			       const struct derp_client_ops *ops, void *arg, int *rc, char *err, size_t errlen)
{
	int dummy;
	if (!rc)
		rc = &dummy;
	if (err && errlen)
		err[0] = 0;
	if (sodium_init() < 0) {
		*rc = -ENOMEM;
		return NULL;
	}
	struct derp_client *c = calloc(1, sizeof(*c));
	if (!c) {
		*rc = -ENOMEM;
		return NULL;
	}
	c->rt = rt;
	c->io.fd = -1;
	if (ops)
		c->ops = *ops;
	c->arg = arg;
	*rc = setup(c, url, priv, opts, err, errlen);
	if (*rc == 0) {
		c->rbuf = malloc(DERP_CLIENT_RBUF);
		c->t_main = rt_timer_new(rt, on_main_timer, c);
		c->t_io = rt_timer_new(rt, on_io_timer, c);
		if (!c->rbuf || !c->t_main || !c->t_io)
			*rc = -ENOMEM;
	}
	if (*rc < 0) {
		c->closing = true;
		derp_client_free(c);
		return NULL;
	}
	/* First attempt on the next loop iteration: no callback runs inside new. */
	c->state = DERP_CLIENT_BACKOFF;
	rt_timer_arm_in(c->t_main, 0);
	return c;
}

void derp_cl_leave(struct derp_client *c)
{
	c->busy--;
	if (c->busy == 0 && c->closing)
		derp_client_free(c);
}

void derp_client_free(derp_client_t *c)
{
	if (!c)
		return;
	c->closing = true;
	if (c->state != DERP_CLIENT_CLOSED) {
		teardown(c);
		c->state = DERP_CLIENT_CLOSED;
		rt_timer_cancel(c->t_main);
	}
	if (c->busy > 0)
		return; /* the outermost entry point finishes the job */
	imp_slot_free(&c->imp[IMP_OUT]);
	imp_slot_free(&c->imp[IMP_IN]);
	rt_timer_free(c->t_main);
	rt_timer_free(c->t_io);
	derp_cl_queue_clear(c);
	if (c->ssl_ctx)
		SSL_CTX_free(c->ssl_ctx);
	free(c->server_name);
	free(c->wbuf);
	free(c->rbuf);
	sodium_memzero(c->priv, sizeof(c->priv));
	free(c);
}

void derp_client_stats(const derp_client_t *c, struct derp_client_stats *out)
{
	*out = c->st;
	out->queued = c->qlen;
	out->write_buffered = c->wlen;
	out->state = c->state;
	out->failures = c->failures;
	out->last_errno = c->last_errno;
}

void derp_client_public_key(const derp_client_t *c, uint8_t out[32]) { memcpy(out, c->pub, 32); }

bool derp_client_server_key(const derp_client_t *c, uint8_t out[32])
{
	if (c->state != DERP_CLIENT_CONNECTED || !c->cp)
		return false;
	memcpy(out, c->cp->server_pub, 32);
	return true;
}

int derp_client_last_error(const derp_client_t *c, char *out, size_t cap)
{
	if (!cap)
		return 0;
	int n = snprintf(out, cap, "%s", c->last_error);
	if (n < 0)
		return 0;
	return (size_t)n < cap ? n : (int)cap - 1;
}
