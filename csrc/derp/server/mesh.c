/* Outbound mesh links: the server's own DERP client to each mesh peer
 * (spec §10 "Mesh"). It presents the mesh key with the server's private
 * key, watches connections (PeerPresent/PeerGone become routes) and carries
 * ForwardPacket. It runs on the server's loop and shares its connection
 * machinery; the codec is frame.c's. */
#include "derp/http.h"
#include "derp/keys.h"
#include "derp/server/server.h"
#include "runtime/log.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#define MESH_CONNECT_TIMEOUT_MS 10000

/* Copies src[n] into dst[cap] with a NUL; false if it does not fit. */
static bool copy_str(char *dst, size_t cap, const char *src, size_t n)
{
	if (n >= cap)
		return false;
	memcpy(dst, src, n);
	dst[n] = 0;
	return true;
}

/* Splits "name[:port]" / "[v6]:port" into name and port (port untouched if absent). */
static bool split_host_port(const char *hp, char *name, size_t ncap, char *port, size_t pcap)
{
	const char *colon;
	if (hp[0] == '[') {
		const char *rb = strchr(hp, ']');
		if (!rb || (rb[1] && rb[1] != ':'))
			return false;
		if (rb[1] == ':' && !copy_str(port, pcap, rb + 2, strlen(rb + 2)))
			return false;
		return copy_str(name, ncap, hp + 1, (size_t)(rb - hp - 1));
	}
	colon = strrchr(hp, ':');
	if (colon && strchr(hp, ':') == colon) {
		if (!copy_str(port, pcap, colon + 1, strlen(colon + 1)))
			return false;
		return copy_str(name, ncap, hp, (size_t)(colon - hp));
	}
	return copy_str(name, ncap, hp, strlen(hp));
}

/* One entry: [http://|https://]host[:port][/dialhost][/derp]. derper's form
 * is a bare "host" (https, port 443) or "host/dialhost". */
static int parse_entry(struct derp_server *s, const char *ent, size_t n, char *err, size_t errlen)
{
	char buf[256], *e = buf;
	if (!copy_str(buf, sizeof(buf), ent, n)) {
		snprintf(err, errlen, "mesh peer %.40s...: too long", ent);
		return -EINVAL;
	}
	bool tls = true;
	if (!strncmp(e, "https://", 8)) {
		e += 8;
	} else if (!strncmp(e, "http://", 7)) {
		e += 7;
		tls = false;
	}
	size_t len = strlen(e);
	if (len >= 5 && !strcmp(e + len - 5, "/derp"))
		e[len - 5] = 0;
	char *dial = strchr(e, '/');
	if (dial)
		*dial++ = 0;
	char name[256], port[16], dialname[256];
	snprintf(port, sizeof(port), "%s", tls ? "443" : "80");
	if (!*e || (dial && (!*dial || strchr(dial, '/'))) ||
	    !split_host_port(e, name, sizeof(name), port, sizeof(port)) || !*name ||
	    (dial && (!split_host_port(dial, dialname, sizeof(dialname), port, sizeof(port)) || !*dialname))) {
		snprintf(err, errlen, "mesh peer %.*s: want host[:port], host/dialhost or http(s)://host:port/derp",
			 (int)n, ent);
		return -EINVAL;
	}
	struct derp_mesh_link *l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->srv = s;
	l->tls = tls;
	copy_str(l->host, sizeof(l->host), e, strlen(e));
	copy_str(l->sni, sizeof(l->sni), name, strlen(name));
	/* Resolved once, here, on the caller's thread: the loop never blocks
	 * on DNS. */
	const char *dn = dial ? dialname : name;
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
	int gai = getaddrinfo(dn, port, &hints, &ai);
	if (gai != 0 || !ai) {
		snprintf(err, errlen, "mesh peer %.*s: cannot resolve %s port %s: %s", (int)n, ent, dn, port,
			 gai_strerror(gai));
		free(l);
		return -EINVAL;
	}
	memcpy(&l->addr, ai->ai_addr, ai->ai_addrlen);
	l->addrlen = ai->ai_addrlen;
	freeaddrinfo(ai);
	l->next = s->links;
	s->links = l;
	return 0;
}

int derp_mesh_parse(struct derp_server *s, const char *list, char *err, size_t errlen)
{
	const char *p = list;
	while (p && *p) {
		const char *comma = strchr(p, ',');
		size_t n = comma ? (size_t)(comma - p) : strlen(p);
		while (n && (*p == ' ' || *p == '\t')) {
			p++;
			n--;
		}
		while (n && (p[n - 1] == ' ' || p[n - 1] == '\t'))
			n--;
		if (n) {
			int rc = parse_entry(s, p, n, err, errlen);
			if (rc < 0)
				return rc;
		}
		p = comma ? comma + 1 : NULL;
	}
	return 0;
}

static void link_connect(struct derp_mesh_link *l);

static void on_retry(rt_t *rt, rt_timer_t *t, void *arg)
{
	struct derp_mesh_link *l = arg;
	l->retry_at = 0;
	if (!l->srv->closing && !l->stopped && !l->conn)
		link_connect(l);
	derp_srv_settle(l->srv);
}

static void schedule_retry(struct derp_mesh_link *l)
{
	struct derp_server *s = l->srv;
	if (s->closing || l->stopped)
		return;
	l->retry_at = derp_srv_now(s) + s->cfg.mesh_retry_ms;
	rt_timer_arm_in(l->retry, s->cfg.mesh_retry_ms);
}

void derp_mesh_check_retries(struct derp_server *s)
{
	uint64_t now = derp_srv_now(s);
	for (struct derp_mesh_link *l = s->links; l; l = l->next) {
		if (l->retry_at && now >= l->retry_at && !l->conn && !l->stopped) {
			rt_timer_cancel(l->retry);
			l->retry_at = 0;
			link_connect(l);
		}
	}
}

static void link_connect(struct derp_mesh_link *l)
{
	struct derp_server *s = l->srv;
	int fd = socket(l->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		schedule_retry(l);
		return;
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (struct sockaddr *)&l->addr, l->addrlen) < 0 && errno != EINPROGRESS) {
		spz_log(SPZ_LOG_DEBUG, "derp", "mesh %s: connect: %s", l->host, strerror(errno));
		close(fd);
		schedule_retry(l);
		return;
	}
	SSL *ssl = NULL;
	if (l->tls) {
		ssl = derp_tls_client_ssl(s->mesh_tls, fd, l->sni);
		if (!ssl) {
			close(fd);
			schedule_retry(l);
			return;
		}
	}
	struct derp_conn *c = derp_conn_new(s, fd, ssl, NULL);
	if (!c) {
		SSL_free(ssl);
		close(fd);
		schedule_retry(l);
		return;
	}
	c->link = l;
	l->conn = c;
	c->state = CS_M_CONNECTING;
	derp_parser_init(&c->parser, DERP_ROLE_CLIENT);
	derp_conn_update_events(c);
	derp_conn_deadline(c, &c->hs_at, derp_srv_now(s) + MESH_CONNECT_TIMEOUT_MS);
}

static void send_request(struct derp_conn *c)
{
	char req[1024];
	size_t n = derp_http_upgrade_request(req, sizeof(req), c->link->host, false, NULL);
	struct derp_pkt *p = n ? derp_pkt_new((uint32_t)n) : NULL;
	if (!p) {
		derp_conn_close(c, CR_HTTP);
		return;
	}
	memcpy(p->data, req, n);
	c->state = CS_M_HTTP;
	derp_conn_push_ctl(c, p);
	derp_conn_update_events(c);
}

void derp_mesh_on_connected(struct derp_conn *c)
{
	if (c->state == CS_M_CONNECTING) {
		int err = 0;
		socklen_t el = sizeof(err);
		if (getsockopt(c->io.fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0)
			err = errno;
		if (err == EINPROGRESS)
			return;
		if (err) {
			spz_log(SPZ_LOG_DEBUG, "derp", "mesh %s: connect: %s", c->link->host, strerror(err));
			derp_conn_close(c, CR_READ_ERROR);
			return;
		}
		c->state = CS_M_TLS;
		if (!c->io.handshake_done) {
			int rc = derp_io_handshake(&c->io);
			if (rc < 0) {
				derp_conn_close(c, CR_READ_ERROR);
				return;
			}
			if (rc == 0) {
				derp_conn_update_events(c);
				return;
			}
		}
	}
	send_request(c); /* TCP and TLS (if any) are up */
}

static void link_handshake(struct derp_conn *c, const uint8_t *server_pub)
{
	struct derp_server *s = c->srv;
	struct derp_mesh_link *l = c->link;
	if (!memcmp(server_pub, s->pub, DERP_KEY_LEN)) {
		spz_log(SPZ_LOG_INFO, "derp", "mesh %s: that is this server; ignoring it", l->host);
		l->stopped = true;
		derp_conn_close(c, CR_SELF);
		return;
	}
	memcpy(l->remote_pub, server_pub, DERP_KEY_LEN);
	struct derp_client_info ci = {.version = DERP_PROTOCOL_VERSION, .has_mesh_key = true};
	memcpy(ci.mesh_key, s->mesh_key, DERP_KEY_LEN);
	uint8_t buf[1024];
	int n = derp_enc_client_info(buf, sizeof(buf), s->priv, s->pub, server_pub, &ci);
	sodium_memzero(&ci, sizeof(ci));
	struct derp_pkt *p = n > 0 ? derp_pkt_new((uint32_t)n + DERP_HDR_LEN) : NULL;
	if (!p) {
		derp_conn_close(c, CR_HANDSHAKE);
		return;
	}
	memcpy(p->data, buf, (size_t)n);
	derp_enc_watch_conns(p->data + n, DERP_HDR_LEN);
	c->state = CS_M_SERVER_INFO;
	derp_conn_push_ctl(c, p);
}

static void link_frame(struct derp_conn *c, const struct derp_frame *f)
{
	struct derp_server *s = c->srv;
	struct derp_mesh_link *l = c->link;
	const uint8_t *key, *data;
	uint8_t reason, ip[16], flags;
	uint16_t port;
	if (f->skipped)
		return;
	if (c->state == CS_M_SERVER_KEY) {
		if (f->type != DERP_FRAME_SERVER_KEY || derp_dec_server_key(f->data, f->len, &key) < 0) {
			derp_conn_close(c, CR_HANDSHAKE);
			return;
		}
		link_handshake(c, key);
		return;
	}
	switch (f->type) {
	case DERP_FRAME_SERVER_INFO: {
		struct derp_server_info si;
		if (c->state != CS_M_SERVER_INFO)
			return;
		if (derp_dec_server_info(f->data, f->len, s->priv, l->remote_pub, &si) < 0) {
			derp_conn_close(c, CR_HANDSHAKE);
			return;
		}
		c->state = CS_M_ACTIVE;
		c->hs_at = 0;
		l->up = true;
		s->st.mesh_clients_up++;
		derp_conn_deadline(c, &c->rd_at, derp_srv_now(s) + 2 * DERP_KEEPALIVE_MS);
		spz_log(SPZ_LOG_INFO, "derp", "mesh %s: connected", l->host);
		break;
	}
	case DERP_FRAME_PEER_PRESENT:
		if (derp_dec_peer_present(f->data, f->len, &key, ip, &port, &flags) == 0)
			derp_peer_route_add(s, key, l);
		break;
	case DERP_FRAME_PEER_GONE:
		if (derp_dec_peer_gone(f->data, f->len, &key, &reason) == 0)
			derp_peer_route_del(s, key, l);
		break;
	case DERP_FRAME_PING:
		if (derp_dec_ping(f->data, f->len, &data) == 0 && !c->pong_pending) {
			c->pong_pending = true;
			memcpy(c->pong, data, DERP_PING_LEN);
			derp_conn_mark_dirty(c);
		}
		break;
	default:
		break; /* KeepAlive, RecvPacket, Health, Restarting, a late ServerKey */
	}
}

static void link_stream(struct derp_conn *c, const uint8_t *b, size_t n)
{
	size_t off = 0;
	while (off < n && !c->closing) {
		struct derp_frame f;
		size_t used = 0;
		int rc = derp_parser_feed(&c->parser, b + off, n - off, &used, &f);
		off += used;
		if (rc < 0) {
			derp_conn_close(c, CR_PROTOCOL);
			return;
		}
		if (rc == 0)
			return;
		link_frame(c, &f);
	}
}

void derp_mesh_on_bytes(struct derp_conn *c, const uint8_t *b, size_t n)
{
	if (c->state != CS_M_HTTP) {
		link_stream(c, b, n);
		return;
	}
	/* The 101 head, then the stream. */
	size_t room = DERP_HTTP_MAX_HEAD - c->inlen, take = n < room ? n : room;
	if (!c->inbuf) {
		c->inbuf = malloc(DERP_HTTP_MAX_HEAD);
		if (!c->inbuf) {
			derp_conn_close(c, CR_HTTP);
			return;
		}
		c->incap = DERP_HTTP_MAX_HEAD;
	}
	memcpy(c->inbuf + c->inlen, b, take);
	c->inlen += (uint32_t)take;
	struct derp_http_resp resp;
	int rc = derp_http_parse_response(c->inbuf, c->inlen, &resp);
	if (rc == 0)
		return;
	if (rc < 0 || resp.status != 101) {
		spz_log(SPZ_LOG_INFO, "derp", "mesh %s: upgrade refused (HTTP status %d)", c->link->host,
			rc < 0 ? 0 : resp.status);
		derp_conn_close(c, CR_HTTP);
		return;
	}
	uint8_t *head = c->inbuf;
	size_t hlen = c->inlen;
	c->inbuf = NULL;
	c->inlen = c->incap = 0;
	c->state = CS_M_SERVER_KEY;
	link_stream(c, head + resp.header_len, hlen - resp.header_len);
	free(head);
	if (!c->closing)
		link_stream(c, b + take, n - take);
}

void derp_mesh_on_closed(struct derp_conn *c)
{
	struct derp_server *s = c->srv;
	struct derp_mesh_link *l = c->link;
	if (l->up) {
		l->up = false;
		s->st.mesh_clients_up--;
		spz_log(SPZ_LOG_INFO, "derp", "mesh %s: disconnected; clearing %llu routes", l->host,
			(unsigned long long)l->routes);
	}
	derp_peer_routes_drop_link(s, l);
	l->conn = NULL;
	c->link = NULL;
	schedule_retry(l);
}

bool derp_mesh_forward(struct derp_mesh_link *l, const uint8_t src[DERP_KEY_LEN], const uint8_t dst[DERP_KEY_LEN],
		       const uint8_t *pkt, size_t len)
{
	struct derp_server *s = l->srv;
	struct derp_conn *c = l->conn;
	if (!c || c->closing || c->state != CS_M_ACTIVE) {
		s->st.drop_unknown_dest++;
		return false;
	}
	if (c->dataq.n >= DERP_SRV_MESH_QUEUE) {
		free(derp_pktq_pop(&c->dataq));
		s->st.drop_queue_head++;
	}
	struct derp_pkt *p = derp_pkt_new((uint32_t)DERP_FORWARD_FRAME_LEN(len));
	if (!p) {
		s->st.drop_queue_tail++;
		return false;
	}
	derp_enc_forward_packet(p->data, p->len, src, dst, pkt, len);
	derp_pktq_push(&c->dataq, p);
	derp_conn_mark_dirty(c);
	return true;
}

void derp_mesh_start(struct derp_server *s)
{
	for (struct derp_mesh_link *l = s->links; l; l = l->next) {
		l->retry = rt_timer_new(s->rt, on_retry, l);
		if (l->retry)
			link_connect(l);
	}
}

void derp_mesh_stop(struct derp_server *s)
{
	struct derp_mesh_link *l, *next;
	for (l = s->links; l; l = l->next)
		if (l->conn)
			derp_conn_close(l->conn, CR_DONE);
	for (l = s->links; l; l = next) {
		next = l->next;
		rt_timer_free(l->retry);
		free(l);
	}
	s->links = NULL;
}
