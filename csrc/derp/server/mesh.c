/* Outbound mesh links: the server's own DERP client to each mesh peer
 * (spec §10 "Mesh"). The protocol is the client's (client_proto.c: the
 * upgrade, ServerKey -> ClientInfo with the mesh key -> ServerInfo, then
 * WatchConns), as Tailscale's mesh client reuses derphttp.Client; URLs are
 * the client's too (derp_url_parse). What is the server's: the connection
 * and its send path (server_conn.c), PeerPresent/PeerGone turned into
 * routes, and ForwardPacket. Loop thread only. */
#include "derp/client_proto.h"
#include "derp/http.h"
#include "derp/keys.h"
#include "derp/server/server.h"
#include "base/log.h"

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
#define MESH_ENTRY_MAX 256 /* one --mesh-with entry */
#define MESH_DERP_PATH "/derp"

/* True if the URL's authority names a port (host_header has more than the host). */
static bool url_has_port(const struct derp_url *u)
{
	const char *h = u->host_header;
	return h[0] == '[' ? strstr(h, "]:") != NULL : strchr(h, ':') != NULL;
}

/* One entry: [http://|https://]host[:port][/dialhost][/derp]. derper's form
 * is a bare "host" (https, port 443) or "host/dialhost": the URL names the
 * server (Host header, SNI, certificate) and dialhost, if any, where to
 * connect. Both go through the client's URL parser. */
static int parse_entry(struct derp_server *s, const char *ent, size_t n, char *err, size_t errlen)
{
	char buf[MESH_ENTRY_MAX], url[MESH_ENTRY_MAX + 16], why[128];
	if (n >= sizeof(buf)) {
		snprintf(err, errlen, "mesh peer %.40s...: too long", ent);
		return -EINVAL;
	}
	memcpy(buf, ent, n);
	buf[n] = 0;
	const char *scheme = "https://";
	char *e = buf;
	if (!strncmp(e, "https://", 8)) {
		e += 8;
	} else if (!strncmp(e, "http://", 7)) {
		e += 7;
		scheme = "http://";
	}
	size_t len = strlen(e), plen = strlen(MESH_DERP_PATH);
	if (len >= plen && !strcmp(e + len - plen, MESH_DERP_PATH))
		e[len - plen] = 0;
	char *dial = strchr(e, '/');
	if (dial)
		*dial++ = 0;
	struct derp_url u, du;
	snprintf(url, sizeof(url), "%s%s", scheme, e);
	int bad = !*e || derp_url_parse(url, &u, why, sizeof(why)) < 0;
	if (!bad && dial) {
		snprintf(url, sizeof(url), "%s%s", scheme, dial);
		bad = !*dial || strchr(dial, '/') || derp_url_parse(url, &du, why, sizeof(why)) < 0;
	}
	if (bad) {
		snprintf(err, errlen, "mesh peer %.*s: want host[:port], host/dialhost or http(s)://host:port/derp",
			 (int)n, ent);
		return -EINVAL;
	}
	struct derp_mesh_link *l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->srv = s;
	l->tls = u.tls;
	snprintf(l->host, sizeof(l->host), "%s", u.host_header);
	snprintf(l->sni, sizeof(l->sni), "%s", u.host);
	/* Resolved once, here, on the caller's thread: the loop never blocks
	 * on DNS. A dialhost without a port keeps the URL's. */
	const char *dn = dial ? du.host : u.host;
	char port[8];
	snprintf(port, sizeof(port), "%u", (unsigned)(dial && url_has_port(&du) ? du.port : u.port));
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
	(void)rt;
	(void)t;
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

/* ---- the client protocol's callbacks (c is the link's connection) ---- */

static int cp_write(void *arg, const uint8_t *buf, size_t len)
{
	struct derp_conn *c = arg;
	struct derp_pkt *p = derp_pkt_new((uint32_t)len);
	if (!p)
		return -ENOMEM;
	memcpy(p->data, buf, len);
	derp_conn_push_ctl(c, p);
	return 0;
}

static void cp_connected(void *arg, const uint8_t server_pub[32], const struct derp_server_info *si)
{
	struct derp_conn *c = arg;
	struct derp_server *s = c->srv;
	struct derp_mesh_link *l = c->link;
	(void)si;
	memcpy(l->remote_pub, server_pub, DERP_KEY_LEN);
	c->state = CS_M_ACTIVE;
	c->hs_at = 0;
	l->up = true;
	s->st.mesh_clients_up++;
	derp_conn_deadline(c, &c->rd_at, derp_srv_now(s) + 2 * DERP_KEEPALIVE_MS);
	spz_log(SPZ_LOG_INFO, "derp", "mesh %s: connected", l->host);
}

static void cp_event(void *arg, const struct derp_client_event *ev)
{
	struct derp_conn *c = arg;
	if (ev->type == DERP_EV_PEER_PRESENT)
		derp_peer_route_add(c->srv, ev->key, c->link);
	else if (ev->type == DERP_EV_PEER_GONE)
		derp_peer_route_del(c->srv, ev->key, c->link);
}

static const struct derp_cp_ops mesh_cp_ops = {
	.write = cp_write, .connected = cp_connected, .event = cp_event,
	/* RecvPacket: nothing is sent to the mesh key itself */
};

static void send_request(struct derp_conn *c)
{
	struct derp_server *s = c->srv;
	struct derp_mesh_link *l = c->link;
	char req[1024];
	size_t n = derp_http_upgrade_request(req, sizeof(req), l->host, false, NULL);
	struct derp_pkt *p = n ? derp_pkt_new((uint32_t)n) : NULL;
	l->cp = p ? malloc(sizeof(*l->cp)) : NULL;
	if (!l->cp) {
		derp_pkt_free(p);
		derp_conn_close(c, CR_HTTP);
		return;
	}
	derp_cp_init(l->cp, s->priv, s->pub, NULL);
	derp_cp_set_mesh(l->cp, s->mesh_key);
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

void derp_mesh_on_bytes(struct derp_conn *c, const uint8_t *b, size_t n)
{
	struct derp_mesh_link *l = c->link;
	int rc = derp_cp_input(l->cp, b, n, &mesh_cp_ops, c);
	if (rc >= 0 || c->closing)
		return;
	if (rc == -ELOOP) {
		spz_log(SPZ_LOG_INFO, "derp", "mesh %s: that is this server; ignoring it", l->host);
		l->stopped = true;
		derp_conn_close(c, CR_SELF);
		return;
	}
	spz_log(SPZ_LOG_INFO, "derp", "mesh %s: %s", l->host, l->cp->err);
	if (l->cp->phase == DERP_CP_FAILED && !l->cp->http_status)
		derp_conn_close(c, CR_HTTP);
	else
		derp_conn_close(c, c->state == CS_M_ACTIVE ? CR_PROTOCOL : CR_HANDSHAKE);
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
	if (l->cp) {
		derp_cp_free(l->cp);
		free(l->cp);
		l->cp = NULL;
	}
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
		derp_pkt_free(derp_pktq_pop(&c->dataq));
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
