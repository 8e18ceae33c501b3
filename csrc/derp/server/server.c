/* The DERP server: configuration, the listener, lifecycle and statistics.
 * Everything after creation runs on the runtime's loop thread. */
#include "derp/keys.h"
#include "derp/server/server.h"
#include "base/log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <unistd.h>

#define ACCEPTS_PER_EVENT 64
#define ACCEPT_PAUSE_MS 100 /* after EMFILE: let connections close first */
#define LISTEN_BACKLOG 4096

/* ---- accepting ---- */

static void on_accept(rt_t *rt, int fd, uint32_t events, void *arg);

static void accept_resume(rt_t *rt, rt_timer_t *t, void *arg)
{
	(void)t;
	struct derp_server *s = arg;
	if (!s->closing)
		rt_fd_mod(rt, s->lfd, EPOLLIN);
}

static void fill_peer_addr(struct derp_conn *c, const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
		memset(c->ip16, 0, 10);
		c->ip16[10] = c->ip16[11] = 0xff; /* IPv4-mapped, as Go sends it */
		memcpy(c->ip16 + 12, &a->sin_addr, 4);
		c->port = ntohs(a->sin_port);
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
		memcpy(c->ip16, &a->sin6_addr, 16);
		c->port = ntohs(a->sin6_port);
	}
}

static void on_accept(rt_t *rt, int fd, uint32_t events, void *arg)
{
	(void)events;
	struct derp_server *s = arg;
	for (int i = 0; i < ACCEPTS_PER_EVENT && !s->closing; i++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		int cfd = accept4(fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (cfd < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
				/* Level-triggered: without a pause the loop would spin. */
				spz_log(SPZ_LOG_WARNING, "derp", "server %u: accept: %s; pausing accepts", s->port,
					strerror(errno));
				rt_fd_mod(rt, fd, 0);
				rt_timer_arm_in(s->accept_retry, ACCEPT_PAUSE_MS);
				break;
			}
			continue; /* ECONNABORTED and friends: that connection only */
		}
		int one = 1;
		setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		struct derp_conn *c = derp_conn_new(s, cfd, NULL, s->tls);
		if (!c) {
			close(cfd);
			continue;
		}
		s->st.accepts++;
		fill_peer_addr(c, &ss);
		c->state = s->tls ? CS_TLS : CS_HTTP;
		derp_conn_deadline(c, &c->hs_at, derp_srv_now(s) + s->cfg.http_timeout_ms);
	}
	derp_srv_settle(s);
}

/* ---- lifecycle ---- */

struct start_arg {
	struct derp_server *s;
	int rc;
};

static void start_on_loop(rt_t *rt, void *arg)
{
	struct start_arg *a = arg;
	struct derp_server *s = a->s;
	s->accept_retry = rt_timer_new(rt, accept_resume, s);
	if (!s->accept_retry) {
		a->rc = -ENOMEM;
		return;
	}
	a->rc = rt_fd_add(rt, s->lfd, EPOLLIN, on_accept, s);
	if (a->rc == 0)
		derp_mesh_start(s);
	derp_srv_settle(s);
}

static void stop_on_loop(rt_t *rt, void *arg)
{
	struct derp_server *s = arg;
	s->closing = true;
	if (s->lfd >= 0) {
		rt_fd_del(rt, s->lfd);
		close(s->lfd);
		s->lfd = -1;
	}
	rt_timer_free(s->accept_retry);
	s->accept_retry = NULL;
	derp_mesh_stop(s);
	if (!s->killed)
		derp_srv_settle(s); /* last chance to write what is queued */
	while (s->conns)
		derp_conn_close(s->conns, CR_DONE);
	derp_srv_settle(s);
	derp_pkt_cache_drain(); /* the frames are all back: return them to malloc */
	/* Keys only remembered for PeerGone bookkeeping. */
	for (size_t i = 0; i < s->ptab_cap; i++) {
		struct derp_peer *p = s->ptab[i], *next;
		for (; p; p = next) {
			next = p->hnext;
			free(p->routes);
			free(p->sent_to);
			free(p);
		}
	}
	free(s->ptab);
	s->ptab = NULL;
	s->ptab_cap = s->npeers = 0;
}

static void server_free_mem(struct derp_server *s)
{
	if (s->lfd >= 0)
		close(s->lfd);
	derp_tls_ctx_free(s->tls);
	derp_tls_ctx_free(s->mesh_tls);
	free(s->cert_pem);
	free(s->allow);
	free(s->rbuf);
	free(s->wbuf);
	struct derp_mesh_link *l, *next;
	for (l = s->links; l; l = next) { /* only when never started */
		next = l->next;
		free(l);
	}
	sodium_memzero(s->priv, sizeof(s->priv));
	sodium_memzero(s->mesh_key, sizeof(s->mesh_key));
	free(s);
}

static int key_cmp(const void *a, const void *b) { return memcmp(a, b, DERP_KEY_LEN); }

static int open_listener(struct derp_server *s, const char *host, uint16_t port, char *err, size_t errlen)
{
	char portstr[8];
	snprintf(portstr, sizeof(portstr), "%u", port);
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV}, *ai = NULL;
	int gai = getaddrinfo(host && *host ? host : NULL, portstr, &hints, &ai);
	if (gai != 0 || !ai) {
		snprintf(err, errlen, "listen address %s: %s", host ? host : "", gai_strerror(gai));
		return -EINVAL;
	}
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		int e = errno;
		freeaddrinfo(ai);
		snprintf(err, errlen, "socket: %s", strerror(e));
		return -e;
	}
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, LISTEN_BACKLOG) < 0) {
		int e = errno;
		freeaddrinfo(ai);
		close(fd);
		snprintf(err, errlen, "cannot listen on %s port %u: %s", host && *host ? host : "*", port, strerror(e));
		return -e;
	}
	freeaddrinfo(ai);
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	getsockname(fd, (struct sockaddr *)&ss, &sl);
	s->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
						 : ((struct sockaddr_in *)&ss)->sin_port);
	s->lfd = fd;
	return 0;
}

static int setup_tls(struct derp_server *s, const struct derp_server_config *cfg, char *err, size_t errlen)
{
	const char *hostname = cfg->hostname && *cfg->hostname ? cfg->hostname
			       : cfg->host && *cfg->host       ? cfg->host
							       : "localhost";
	if (cfg->cert_file || cfg->key_file) {
		if (!cfg->cert_file || !cfg->key_file) {
			snprintf(err, errlen, "TLS needs both a certificate file and a key file");
			return -EINVAL;
		}
		s->tls = derp_tls_server_ctx_files(cfg->cert_file, cfg->key_file, cfg->require_sni ? hostname : NULL,
						   err, errlen);
		if (!s->tls)
			return -EINVAL;
		/* The leaf's hash, for sha256-raw pinning. */
		FILE *f = fopen(cfg->cert_file, "re");
		if (f) {
			char *pem = calloc(1, 1 << 20);
			if (pem) {
				size_t n = fread(pem, 1, (1 << 20) - 1, f);
				pem[n] = 0;
				s->has_cert_sha = derp_tls_pem_sha256(pem, s->cert_sha256) == 0;
				free(pem);
			}
			fclose(f);
		}
		return 0;
	}
	char *key_pem = NULL;
	int rc = derp_tls_self_signed(hostname, &s->cert_pem, &key_pem, s->cert_sha256, err, errlen);
	if (rc < 0)
		return rc;
	s->has_cert_sha = true;
	s->tls = derp_tls_server_ctx_pem(s->cert_pem, key_pem, cfg->require_sni ? hostname : NULL, err, errlen);
	derp_tls_free_secret(key_pem);
	return s->tls ? 0 : -EINVAL;
}

int derp_server_new(struct rt *rt, const struct derp_server_config *cfg, derp_server_t **out, char *err, size_t errlen)
{
	int rc;
	*out = NULL;
	if (sodium_init() < 0) {
		snprintf(err, errlen, "libsodium failed to initialise");
		return -EIO;
	}
	struct derp_server *s = calloc(1, sizeof(*s));
	if (!s) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	s->rt = rt;
	s->lfd = -1;
	s->cfg = *cfg;
	struct derp_server_config *c = &s->cfg;
	c->host = c->cert_file = c->key_file = c->hostname = c->mesh_with = c->mesh_ca_file = c->allowlist_file = NULL;
	c->has_private_key = 0;
	sodium_memzero(c->private_key, sizeof(c->private_key));
	sodium_memzero(c->mesh_key, sizeof(c->mesh_key));
#define DEF(f, v)                 \
	do {                      \
		if (!c->f)        \
			c->f = v; \
	} while (0)
	DEF(keepalive_ms, DERP_KEEPALIVE_MS);
	DEF(keepalive_jitter_ms, DERP_KEEPALIVE_JITTER_MS);
	DEF(handshake_timeout_ms, DERP_HANDSHAKE_TIMEOUT_MS);
	DEF(http_timeout_ms, DERP_SRV_HTTP_TIMEOUT_MS);
	DEF(write_timeout_ms, DERP_WRITE_TIMEOUT_MS);
	DEF(mesh_write_timeout_ms, DERP_MESH_WRITE_TIMEOUT_MS);
	DEF(mesh_retry_ms, DERP_SRV_MESH_RETRY_MS);
	DEF(queue_depth, DERP_QUEUE_DEPTH);
	DEF(not_here_interval_ms, DERP_SRV_NOT_HERE_INTERVAL_MS);
#undef DEF
	if (c->rate_bytes_per_s && c->rate_burst_bytes < DERP_SRV_RATE_FRAME_MAX)
		c->rate_burst_bytes = DERP_SRV_RATE_FRAME_MAX;

	if (cfg->has_private_key) {
		memcpy(s->priv, cfg->private_key, DERP_KEY_LEN);
		if (derp_key_public(s->priv, s->pub) < 0) {
			snprintf(err, errlen, "the server private key is all zeros");
			rc = -EINVAL;
			goto fail;
		}
	} else {
		derp_key_generate(s->priv, s->pub);
	}
	if (cfg->has_mesh_key) {
		if (derp_key_is_zero(cfg->mesh_key)) {
			snprintf(err, errlen, "the mesh key is all zeros");
			rc = -EINVAL;
			goto fail;
		}
		s->has_mesh_key = true;
		memcpy(s->mesh_key, cfg->mesh_key, DERP_KEY_LEN);
	}
	if (cfg->allowlist_file) {
		rc = derp_allowlist_load(cfg->allowlist_file, &s->allow, &s->nallow, err, errlen);
		if (rc < 0)
			goto fail;
		qsort(s->allow, s->nallow, DERP_KEY_LEN, key_cmp);
		s->has_allowlist = true;
	}
	if (cfg->tls && (rc = setup_tls(s, cfg, err, errlen)) < 0)
		goto fail;
	if (cfg->mesh_with && *cfg->mesh_with) {
		if (!s->has_mesh_key) {
			snprintf(err, errlen, "meshing with other servers needs a mesh key");
			rc = -EINVAL;
			goto fail;
		}
		if ((rc = derp_mesh_parse(s, cfg->mesh_with, err, errlen)) < 0)
			goto fail;
		s->mesh_tls = derp_tls_client_ctx(cfg->mesh_ca_file, NULL, cfg->mesh_insecure, err, errlen);
		if (!s->mesh_tls) {
			rc = -EINVAL;
			goto fail;
		}
	}
	s->rbuf = malloc(DERP_SRV_RBUF);
	s->wbuf = malloc(DERP_SRV_TLS_CHUNK);
	if (!s->rbuf || !s->wbuf) {
		snprintf(err, errlen, "out of memory");
		rc = -ENOMEM;
		goto fail;
	}
	if ((rc = open_listener(s, cfg->host, cfg->port, err, errlen)) < 0)
		goto fail;
	struct start_arg a = {.s = s};
	if ((rc = rt_call(rt, start_on_loop, &a)) < 0 || (rc = a.rc) < 0) {
		snprintf(err, errlen, "cannot start on the runtime: %s", strerror(-rc));
		if (a.rc == 0 || s->accept_retry)
			rt_call(rt, stop_on_loop, s);
		goto fail;
	}
	spz_log(SPZ_LOG_INFO, "derp", "server listening on port %u (%s)", s->port, s->tls ? "TLS" : "plain HTTP");
	*out = s;
	return 0;
fail:
	server_free_mem(s);
	return rc;
}

void derp_server_free(derp_server_t *s)
{
	if (!s)
		return;
	rt_call(s->rt, stop_on_loop, s);
	server_free_mem(s);
}

/* A crash, as peers see it: every connection is reset (SO_LINGER 0 makes
 * close send RST), nothing queued is written. */
static void kill_on_loop(rt_t *rt, void *arg)
{
	struct derp_server *s = arg;
	struct linger lg = {.l_onoff = 1, .l_linger = 0};
	for (struct derp_conn *c = s->conns; c; c = c->next)
		if (c->io.fd >= 0)
			setsockopt(c->io.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	s->killed = true;
	stop_on_loop(rt, arg);
}

void derp_server_kill(derp_server_t *s)
{
	if (!s)
		return;
	rt_call(s->rt, kill_on_loop, s);
	server_free_mem(s);
}

uint16_t derp_server_port(derp_server_t *s) { return s->port; }

void derp_server_public_key(derp_server_t *s, uint8_t out[32]) { memcpy(out, s->pub, DERP_KEY_LEN); }

int derp_server_cert_pem(derp_server_t *s, char *out, size_t cap)
{
	if (!s->cert_pem)
		return 0;
	size_t n = strlen(s->cert_pem);
	if (n + 1 > cap)
		return -ENOSPC;
	memcpy(out, s->cert_pem, n + 1);
	return (int)n;
}

int derp_server_cert_sha256(derp_server_t *s, uint8_t out[32])
{
	if (!s->has_cert_sha)
		return -ENOENT;
	memcpy(out, s->cert_sha256, 32);
	return 0;
}

struct stats_arg {
	struct derp_server *s;
	struct derp_server_stats *out;
};

static void stats_on_loop(rt_t *rt, void *arg)
{
	(void)rt;
	struct stats_arg *a = arg;
	*a->out = a->s->st;
}

int derp_server_stats(derp_server_t *s, struct derp_server_stats *out)
{
	struct stats_arg a = {.s = s, .out = out};
	return rt_call(s->rt, stats_on_loop, &a);
}

struct advance_arg {
	struct derp_server *s;
	uint64_t ms;
};

static void advance_on_loop(rt_t *rt, void *arg)
{
	(void)rt;
	struct advance_arg *a = arg;
	struct derp_server *s = a->s;
	if (s->closing)
		return;
	s->skew_ms += a->ms;
	/* Snapshot: a deadline can close other connections. */
	size_t n = 0;
	for (struct derp_conn *c = s->conns; c; c = c->next)
		n++;
	struct derp_conn **v = n ? malloc(n * sizeof(*v)) : NULL;
	if (n && !v)
		return;
	size_t i = 0;
	for (struct derp_conn *c = s->conns; c && i < n; c = c->next)
		v[i++] = c;
	for (size_t j = 0; j < i; j++)
		derp_conn_check_deadlines(v[j]); /* closed ones are skipped; freed only in settle */
	free(v);
	derp_mesh_check_retries(s);
	derp_srv_settle(s);
}

int derp_server_advance_clock(derp_server_t *s, uint64_t ms)
{
	struct advance_arg a = {.s = s, .ms = ms};
	return rt_call(s->rt, advance_on_loop, &a);
}

/* ---- helpers for Python ---- */

int derp_server_load_mesh_key(const char *path, uint8_t key[32], char *err, size_t errlen)
{
	return derp_mesh_key_load(path, key, err, errlen);
}

static int write_file(const char *path, const char *text, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd < 0)
		return -errno;
	size_t n = strlen(text), off = 0;
	while (off < n) {
		ssize_t w = write(fd, text + off, n - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			int e = errno;
			close(fd);
			return -e;
		}
		off += (size_t)w;
	}
	return close(fd) < 0 ? -errno : 0;
}

int derp_server_write_self_signed(const char *hostname, const char *cert_path, const char *key_path, char *err,
				  size_t errlen)
{
	char *cert = NULL, *key = NULL;
	uint8_t sha[32];
	int rc = derp_tls_self_signed(hostname, &cert, &key, sha, err, errlen);
	if (rc < 0)
		return rc;
	rc = write_file(key_path, key, 0600);
	if (rc == 0)
		rc = write_file(cert_path, cert, 0644);
	if (rc < 0)
		snprintf(err, errlen, "cannot write certificate files: %s", strerror(-rc));
	free(cert);
	derp_tls_free_secret(key);
	return rc;
}
