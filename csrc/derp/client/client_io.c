/* derp client I/O on the loop: non-blocking TCP connect through the
 * resolved addresses, TLS handshake, reads into the protocol core, and the
 * write buffer that frames are encoded into. */
#include "derp/client/client_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/tcp.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <sodium.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "base/log.h"
#include "trace/trace.h"

static void addr_text(const struct sockaddr_storage *ss, char *out, size_t cap)
{
	char ip[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;
	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const void *)ss;
		inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
		port = ntohs(s6->sin6_port);
		snprintf(out, cap, "[%s]:%u", ip, port);
		return;
	}
	const struct sockaddr_in *s4 = (const void *)ss;
	inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
	port = ntohs(s4->sin_port);
	snprintf(out, cap, "%s:%u", ip, port);
}

void derp_cl_set_interest(struct derp_client *c)
{
	if (c->io.fd < 0)
		return;
	uint32_t want;
	if (c->state == DERP_CLIENT_CONNECTING) {
		want = EPOLLOUT;
	} else {
		want = EPOLLIN;
		if (c->io.want_write || (c->wblocked && c->wlen > 0))
			want |= EPOLLOUT;
	}
	if (want == c->events)
		return;
	int rc = c->events ? rt_fd_mod(c->rt, c->io.fd, want) : rt_fd_add(c->rt, c->io.fd, want, derp_cl_on_io, c);
	if (rc < 0) {
		derp_cl_fail(c, "cannot watch the socket: %s", strerror(-rc));
		return;
	}
	c->events = want;
}

/* Walks the frame boundaries the writer has passed, so a teardown can tell
 * how many SendPacket frames never left. */
static void wframe_advance(struct derp_client *c)
{
	size_t end = c->whead + c->wlen;
	while (c->wframe < c->whead && c->wframe + DERP_HDR_LEN <= end) {
		uint32_t flen = derp_get_u32(c->wbuf + c->wframe + 1);
		bool send = c->wbuf[c->wframe] == DERP_FRAME_SEND_PACKET;
		size_t next = c->wframe + DERP_HDR_LEN + flen;
		if (next > c->whead)
			c->wpartial_send = send;
		c->wframe = next;
	}
}

void derp_cl_close_io(struct derp_client *c)
{
	if (c->io.fd >= 0) {
		/* Count the packets that were written into the buffer but never
		 * reached the socket. */
		wframe_advance(c);
		size_t end = c->whead + c->wlen;
		uint64_t lost = (c->wframe > c->whead && c->wpartial_send) ? 1 : 0;
		for (size_t off = c->wframe; off + DERP_HDR_LEN <= end;) {
			if (c->wbuf[off] == DERP_FRAME_SEND_PACKET)
				lost++;
			off += DERP_HDR_LEN + derp_get_u32(c->wbuf + off + 1);
		}
		TR_TAP(lost, TR_HOP_DC_TX, tr_key_id(c->pub), TR_R_DC_CONN_LOST, lost);
		c->st.drops_conn_lost += lost;
		if (c->events)
			rt_fd_del(c->rt, c->io.fd);
		derp_io_close(&c->io); /* frees the SSL, closes the fd */
	}
	memset(&c->io, 0, sizeof(c->io));
	c->io.fd = -1;
	c->events = 0;
	c->wblocked = false;
	c->whead = c->wlen = c->wframe = 0;
	c->wpartial_send = false;
	c->flush_pending = c->read_pending = false;
	if (c->t_io)
		rt_timer_cancel(c->t_io);
}

/* ---- write buffer ---- */

int derp_cl_wbuf_reserve(struct derp_client *c, size_t n)
{
	if (c->whead > 0 && (c->wlen == 0 || c->whead >= c->wcap / 2 || c->whead + c->wlen + n > c->wcap)) {
		/* Compact: keep the unwritten bytes at the front. */
		wframe_advance(c);
		memmove(c->wbuf, c->wbuf + c->whead, c->wlen);
		c->wframe = c->wframe >= c->whead ? c->wframe - c->whead : 0;
		if (c->wframe == 0)
			c->wpartial_send = false;
		c->whead = 0;
	}
	size_t need = c->wlen + n;
	if (need <= c->wcap)
		return 0;
	size_t cap = c->wcap ? c->wcap : 64 * 1024;
	while (cap < need)
		cap *= 2;
	uint8_t *b = realloc(c->wbuf, cap);
	if (!b)
		return -ENOMEM;
	c->wbuf = b;
	c->wcap = cap;
	return 0;
}

static void do_flush(struct derp_client *c)
{
	uint64_t gen = c->gen;
	c->flush_pending = false;
	while (c->wlen > 0 && c->io.fd >= 0) {
		ssize_t n = derp_io_write(&c->io, c->wbuf + c->whead, c->wlen);
		if (n == -EAGAIN) {
			c->wblocked = true;
			break;
		}
		if (n < 0) {
			derp_cl_fail(c, "write to the server failed: %s", strerror((int)-n));
			return;
		}
		c->wblocked = false;
		c->whead += (size_t)n;
		c->wlen -= (size_t)n;
		wframe_advance(c);
		if (c->wlen == 0) {
			c->whead = c->wframe = 0;
			c->wpartial_send = false;
		}
		/* Room again: move queued sends into the buffer, in order. */
		if (c->state == DERP_CLIENT_CONNECTED && c->qhead && c->wlen < c->o.write_buffer_max / 2) {
			derp_cl_queue_drain(c);
			if (gen != c->gen)
				return;
		}
	}
	if (c->io.fd >= 0)
		derp_cl_set_interest(c);
	derp_cl_notify_writable(c);
}

void derp_cl_schedule_flush(struct derp_client *c)
{
	if (c->wblocked || c->flush_pending || c->io.fd < 0)
		return;
	/* Batch the frames of one loop iteration into one write. */
	c->flush_pending = true;
	if (!rt_timer_armed(c->t_io))
		rt_timer_arm_in(c->t_io, 0);
}

int derp_cl_write(struct derp_client *c, const uint8_t *buf, size_t len)
{
	if (c->io.fd < 0)
		return -ENOTCONN;
	if (derp_cl_wbuf_reserve(c, len) < 0)
		return -ENOMEM;
	memcpy(c->wbuf + c->whead + c->wlen, buf, len);
	c->wlen += len;
	derp_cl_note_congestion(c);
	derp_cl_schedule_flush(c);
	return 0;
}

/* ---- reading ---- */

/* The server closed (err 0) or reset the connection: during the handshake
 * that says why it would not take us. */
static void fail_closed(struct derp_client *c, int err)
{
	if (c->state == DERP_CLIENT_UPGRADING && c->cp && (err == 0 || err == ECONNRESET)) {
		if (c->cp->phase == DERP_CP_SERVER_INFO) {
			char hex[2 * 32 + 1];
			sodium_bin2hex(hex, sizeof(hex), c->pub, 32);
			derp_cl_fail_err(c, EACCES,
					 "refused by the server: it closed the connection after our ClientInfo "
					 "(is nodekey:%s on its allowlist?)",
					 hex);
			return;
		}
		if (c->cp->phase == DERP_CP_HTTP && c->cp->http_len == 0) {
			derp_cl_fail_err(c, EPROTO,
					 "the server closed the connection without answering the HTTP upgrade%s",
					 c->url.tls ? "" : " (a TLS relay? use https://)");
			return;
		}
	}
	if (err == 0)
		derp_cl_fail_err(c, ECONNRESET, "server closed the connection");
	else
		derp_cl_fail_err(c, err, "read from the server failed: %s",
				 err == EPROTO ? "TLS error" : strerror(err));
}

static void do_read(struct derp_client *c)
{
	uint64_t gen = c->gen;
	c->read_pending = false;
	for (int round = 0; round < DERP_CLIENT_READ_BUDGET; round++) {
		/* Fill the buffer as far as the socket allows, then parse: frames
		 * whose bytes all arrived are then handed over without a copy. */
		size_t have = 0;
		bool eof = false, again = false;
		int err = 0;
		while (have < DERP_CLIENT_RBUF) {
			ssize_t n = derp_io_read(&c->io, c->rbuf + have, DERP_CLIENT_RBUF - have);
			if (n > 0) {
				have += (size_t)n;
				continue;
			}
			if (n == 0)
				eof = true;
			else if (n == -EAGAIN)
				again = true;
			else
				err = (int)-n;
			break;
		}
		if (have > 0) {
			c->last_rx_ms = rt_now_ms();
			derp_cl_feed(c, c->rbuf, have);
			if (gen != c->gen)
				return;
		}
		if (eof || err) {
			fail_closed(c, err);
			return;
		}
		if (again) {
			derp_cl_set_interest(c);
			return;
		}
	}
	/* Budget used up with data left (maybe inside SSL, where epoll cannot
	 * see it): continue on the next loop iteration. */
	c->read_pending = true;
	if (!rt_timer_armed(c->t_io))
		rt_timer_arm_in(c->t_io, 0);
}

void derp_cl_io_deferred(struct derp_client *c)
{
	uint64_t gen = c->gen;
	if (c->flush_pending)
		do_flush(c);
	if (gen == c->gen && c->read_pending && c->io.fd >= 0)
		do_read(c);
}

/* ---- connecting ---- */

/* OpenSSL reasons that mean the bytes back were not TLS at all. */
static bool not_tls_reason(int reason)
{
	return reason == SSL_R_WRONG_VERSION_NUMBER || reason == SSL_R_PACKET_LENGTH_TOO_LONG ||
	       reason == SSL_R_HTTP_REQUEST || reason == SSL_R_UNEXPECTED_EOF_WHILE_READING;
}

/* A connect errno with what usually fixes it. */
static const char *connect_hint(int err)
{
	switch (err) {
	case ECONNREFUSED: return " (is the relay running, on that port?)";
	case ENETUNREACH:
	case EHOSTUNREACH: return " (no route to the relay's host)";
	default: return "";
	}
}

static void tls_step(struct derp_client *c)
{
	int rc = derp_io_handshake(&c->io);
	if (rc == 0) {
		derp_cl_set_interest(c);
		return;
	}
	if (rc < 0) {
		c->st.tls_errors++;
		long v = c->io.ssl ? SSL_get_verify_result(c->io.ssl) : X509_V_OK;
		if (v != X509_V_OK) {
			derp_cl_fail_err(
				c, EPROTO,
				"TLS: certificate verification failed: %s (set ca_file, pin_sha256 or insecure)",
				X509_verify_cert_error_string(v));
		} else if (rc == -ECONNRESET) {
			ERR_clear_error();
			derp_cl_fail_err(
				c, EPROTO,
				"TLS handshake: the server closed the connection (a plain relay? use http://)");
		} else {
			unsigned long e = c->io.ssl_err;
			char why[160] = "unknown error";
			if (e)
				ERR_error_string_n(e, why, sizeof(why));
			derp_cl_fail_err(c, EPROTO, "TLS handshake: %s%s", why,
					 e && not_tls_reason(ERR_GET_REASON(e))
						 ? " (the server does not speak TLS here: a plain relay? use http://)"
						 : "");
		}
		return;
	}
	if (c->has_pin) {
		uint8_t h[32];
		if (derp_tls_peer_sha256(c->io.ssl, h) < 0 || CRYPTO_memcmp(h, c->pin, 32) != 0) {
			c->st.tls_errors++;
			derp_cl_fail(c, "TLS: the server certificate's sha256 does not match pin_sha256");
			return;
		}
	}
	derp_cl_start_upgrade(c);
}

static void tcp_connected(struct derp_client *c)
{
	int one = 1;
	setsockopt(c->io.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (!c->url.tls) {
		derp_cl_start_upgrade(c);
		return;
	}
	const char *name = c->server_name ? c->server_name : c->url.host;
	SSL *ssl = derp_tls_client_ssl(c->ssl_ctx, c->io.fd, name);
	if (!ssl) {
		c->st.tls_errors++;
		derp_cl_fail(c, "TLS: cannot create a connection object");
		return;
	}
	int fd = c->io.fd;
	derp_io_init_client(&c->io, fd, ssl);
	c->state = DERP_CLIENT_TLS;
	tls_step(c);
}

void derp_cl_dial_next(struct derp_client *c)
{
	char why[160] = "no address";
	int err = EHOSTUNREACH;
	while (c->ai < c->naddr) {
		const struct sockaddr_storage *ss = &c->addrs[c->ai];
		char at[80];
		addr_text(ss, at, sizeof(at));
		int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
		if (fd < 0) {
			snprintf(why, sizeof(why), "socket for %s: %s", at, strerror(errno));
			c->ai++;
			continue;
		}
		memset(&c->io, 0, sizeof(c->io));
		c->io.fd = fd;
		c->events = 0;
		if (connect(fd, (const struct sockaddr *)ss, c->alens[c->ai]) == 0) {
			tcp_connected(c);
			return;
		}
		if (errno == EINPROGRESS) {
			c->state = DERP_CLIENT_CONNECTING;
			uint64_t now = rt_now_ms();
			uint64_t left = c->attempt_deadline > now ? c->attempt_deadline - now : 0;
			bool more = c->ai + 1 < c->naddr;
			c->dial_deadline = now + (more && c->o.dial_timeout_ms < left ? c->o.dial_timeout_ms : left);
			derp_cl_set_interest(c);
			if (c->t_main)
				rt_timer_arm_at(c->t_main, c->dial_deadline);
			return;
		}
		err = errno;
		snprintf(why, sizeof(why), "connect to %s: %s%s", at, strerror(err), connect_hint(err));
		close(fd);
		c->io.fd = -1;
		c->ai++;
	}
	derp_cl_fail_err(c, err, "%s", why);
}

/* The socket became writable: connected, or failed (then try the next
 * address). */
static void connect_result(struct derp_client *c)
{
	int err = 0;
	socklen_t len = sizeof(err);
	if (getsockopt(c->io.fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = errno;
	if (err == 0) {
		tcp_connected(c);
		return;
	}
	char at[80];
	addr_text(&c->addrs[c->ai], at, sizeof(at));
	if (c->events)
		rt_fd_del(c->rt, c->io.fd);
	close(c->io.fd);
	c->io.fd = -1;
	c->events = 0;
	c->ai++;
	if (c->ai < c->naddr) {
		derp_cl_dial_next(c);
		return;
	}
	derp_cl_fail_err(c, err, "connect to %s: %s%s", at, strerror(err), connect_hint(err));
}

void derp_cl_on_io(rt_t *rt, int fd, uint32_t events, void *arg)
{
	(void)rt;
	(void)fd;
	struct derp_client *c = arg;
	c->busy++;
	uint64_t gen = c->gen;
	switch (c->state) {
	case DERP_CLIENT_CONNECTING: connect_result(c); break;
	case DERP_CLIENT_TLS: tls_step(c); break;
	case DERP_CLIENT_UPGRADING:
	case DERP_CLIENT_CONNECTED:
		/* TLS may need the other direction (a read that waits for a write
		 * and back), so any event retries both; with level-triggered epoll
		 * and EPOLLOUT registered only while blocked, that costs little. */
		if ((events & EPOLLOUT) || c->wblocked) {
			c->wblocked = false;
			do_flush(c);
		}
		if (gen == c->gen && c->io.fd >= 0)
			do_read(c);
		break;
	default: break;
	}
	derp_cl_leave(c);
}
