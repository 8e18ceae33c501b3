/* Shared by the DERP server's fuzz targets (derp_server_hs.c,
 * derp_server_stream.c): a real server (plain HTTP, a mesh key, an
 * allowlist of two keys) on its own runtime. An input runs as one accepted
 * connection over a socketpair, entirely on the loop thread, as
 * the server's own read path would run it: bytes in (derp_conn_on_bytes),
 * then the batched writes and reaping (derp_srv_settle). A registered
 * bystander client stays connected across inputs, so packets sent to it go
 * through the real queues and writes; it is recreated if an input closes it.
 *
 * What the server writes is read off our ends after every FZ_DRAIN_EVERY
 * chunks and at the end of the input, not after every chunk: a socketpair's
 * buffer (over 200 KiB) holds far more than an input makes the server
 * write, so its writes never wait, as with a fast reader; the recv calls
 * per chunk had been most of an execution's time.
 *
 * Once the server and the bystander are up, the loop is parked (rt_park.h)
 * and inputs run on the fuzzing thread itself: no thread hop per input, and
 * no timer fires between inputs by itself (deadlines run where a target
 * asks). A parked loop never polls, so from then on the link's wrappers of
 * rt_fd_add and rt_fd_mod (mk/derp.mk) register nothing: the runtime would
 * keep each closed connection's entry until the end of an epoll batch that
 * never comes. ("Loop thread" below: the loop until it is parked, then
 * the fuzzing thread.)
 *
 * Keys: ALLOWED and BYSTANDER are on the allowlist, STRANGER is not.
 *
 * Speed: the box's X25519 (two per handshake) is memoised: the link wraps
 * libsodium's crypto_box_easy and crypto_box_open_easy (mk/derp.mk) with
 * their documented split, crypto_box_beforenm (kept per key pair) and the
 * _afternm functions, which compute the same bytes. */
#ifndef SPANZA_FUZZ_DERP_SERVER_HARNESS_H
#define SPANZA_FUZZ_DERP_SERVER_HARNESS_H

#include <errno.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "crypto/crypto.h"
#include "derp/http.h"
#include "derp/keys.h"
#include "derp/server/server.h"
#include "rt_park.h"

enum { FZ_ALLOWED, FZ_STRANGER, FZ_BYSTANDER, FZ_NKEYS };

#define FZ_HEAD_MAX 512
#define FZ_CI_MAX 1024
#define FZ_DRAIN_BUF 65536
#define FZ_DRAIN_EVERY 64 /* chunks */

static const uint8_t FZ_SERVER_PRIV[DERP_KEY_LEN] = {0x48, 0x21, 0x9a, 0x03, 0x5c, 0x77, 0x10, 0xe2, 0x3f, 0x81, 0x6d,
						     0x2b, 0x99, 0x04, 0xc1, 0x5a, 0x76, 0x0e, 0x33, 0xd8, 0x12, 0xab,
						     0x6f, 0x40, 0x05, 0xee, 0x91, 0x27, 0x3c, 0x88, 0x5d, 0x61};
static const uint8_t FZ_MESH_KEY[DERP_KEY_LEN] = {0x6d, 0x65, 0x73, 0x68, 0x2d, 0x6b, 0x65, 0x79, 0x2d, 0x66, 0x6f,
						  0x72, 0x2d, 0x66, 0x75, 0x7a, 0x7a, 0x69, 0x6e, 0x67, 0x2d, 0x6f,
						  0x6e, 0x6c, 0x79, 0x2d, 0x30, 0x31, 0x32, 0x33, 0x34, 0x35};

#define FZ_BOX_MEMO 16

struct fz_box_memo {
	uint8_t pk[crypto_box_PUBLICKEYBYTES], sk[crypto_box_SECRETKEYBYTES];
	uint8_t k[crypto_box_BEFORENMBYTES];
};
static struct fz_box_memo fz_box_memo[FZ_BOX_MEMO];
static size_t fz_nbox;

/* The shared key of (pk, sk): 0, or -1 for a low-order pk. */
static int fz_box_key(uint8_t k[crypto_box_BEFORENMBYTES], const uint8_t *pk, const uint8_t *sk)
{
	for (size_t i = 0; i < fz_nbox; i++)
		if (!memcmp(fz_box_memo[i].pk, pk, sizeof(fz_box_memo[i].pk)) &&
		    !memcmp(fz_box_memo[i].sk, sk, sizeof(fz_box_memo[i].sk))) {
			memcpy(k, fz_box_memo[i].k, crypto_box_BEFORENMBYTES);
			return 0;
		}
	if (crypto_box_beforenm(k, pk, sk) != 0)
		return -1;
	if (fz_nbox < FZ_BOX_MEMO) {
		struct fz_box_memo *m = &fz_box_memo[fz_nbox++];
		memcpy(m->pk, pk, sizeof(m->pk));
		memcpy(m->sk, sk, sizeof(m->sk));
		memcpy(m->k, k, sizeof(m->k));
	}
	return 0;
}

int __wrap_crypto_box_easy(unsigned char *c, const unsigned char *m, unsigned long long mlen, const unsigned char *n,
			   const unsigned char *pk, const unsigned char *sk);
int __wrap_crypto_box_open_easy(unsigned char *m, const unsigned char *c, unsigned long long clen,
				const unsigned char *n, const unsigned char *pk, const unsigned char *sk);

int __wrap_crypto_box_easy(unsigned char *c, const unsigned char *m, unsigned long long mlen, const unsigned char *n,
			   const unsigned char *pk, const unsigned char *sk)
{
	uint8_t k[crypto_box_BEFORENMBYTES];
	if (fz_box_key(k, pk, sk) < 0)
		return -1;
	return crypto_box_easy_afternm(c, m, mlen, n, k);
}

int __wrap_crypto_box_open_easy(unsigned char *m, const unsigned char *c, unsigned long long clen,
				const unsigned char *n, const unsigned char *pk, const unsigned char *sk)
{
	uint8_t k[crypto_box_BEFORENMBYTES];
	if (fz_box_key(k, pk, sk) < 0)
		return -1;
	return crypto_box_open_easy_afternm(m, c, clen, n, k);
}

static bool fz_parked;

int __real_rt_fd_add(rt_t *rt, int fd, uint32_t events, rt_fd_cb cb, void *arg);
int __wrap_rt_fd_add(rt_t *rt, int fd, uint32_t events, rt_fd_cb cb, void *arg);
int __real_rt_fd_mod(rt_t *rt, int fd, uint32_t events);
int __wrap_rt_fd_mod(rt_t *rt, int fd, uint32_t events);

int __wrap_rt_fd_add(rt_t *rt, int fd, uint32_t events, rt_fd_cb cb, void *arg)
{
	return fz_parked ? 0 : __real_rt_fd_add(rt, fd, events, cb, arg);
}

int __wrap_rt_fd_mod(rt_t *rt, int fd, uint32_t events) { return fz_parked ? 0 : __real_rt_fd_mod(rt, fd, events); }

static struct {
	rt_t *rt;
	struct derp_server *srv;
	uint8_t server_pub[DERP_KEY_LEN];
	uint8_t priv[FZ_NKEYS][DERP_KEY_LEN], pub[FZ_NKEYS][DERP_KEY_LEN];
	char head[FZ_HEAD_MAX]; /* a valid upgrade request */
	size_t head_len;
	char head_fast[FZ_HEAD_MAX]; /* ... with Derp-Fast-Start */
	size_t head_fast_len;
	struct derp_conn *bystander;
	int bystander_peer; /* our end of its socketpair */
} fz;

static void fz_die(const char *what)
{
	fprintf(stderr, "fuzz harness: %s\n", what);
	abort();
}

/* A ClientInfo frame for key k, mesh key included or not. */
static size_t fz_client_info(uint8_t *out, size_t cap, int k, bool mesh)
{
	struct derp_client_info ci = {.version = DERP_PROTOCOL_VERSION};
	if (mesh) {
		ci.has_mesh_key = true;
		memcpy(ci.mesh_key, FZ_MESH_KEY, DERP_KEY_LEN);
	}
	int n = derp_enc_client_info(out, cap, fz.priv[k], fz.pub[k], fz.server_pub, &ci);
	if (n <= 0)
		fz_die("cannot encode ClientInfo");
	return (size_t)n;
}

/* Reads and discards what the server wrote to our end. */
static void fz_drain(int fd)
{
	static uint8_t buf[FZ_DRAIN_BUF];
	for (int i = 0; i < 64; i++)
		if (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) <= 0)
			return;
}

/* Loop thread: an accepted plain-HTTP connection over a new socketpair;
 * *peer gets our end. */
static struct derp_conn *fz_conn_new(int *peer)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
		fz_die("socketpair");
	struct derp_conn *c = derp_conn_new(fz.srv, sv[0], NULL, NULL);
	if (!c)
		fz_die("derp_conn_new");
	c->state = CS_HTTP;
	c->ip16[10] = c->ip16[11] = 0xff;
	c->ip16[12] = 127;
	c->ip16[15] = 1;
	c->port = 40000;
	derp_conn_deadline(c, &c->hs_at, derp_srv_now(fz.srv) + fz.srv->cfg.http_timeout_ms);
	*peer = sv[1];
	return c;
}

/* Reads what the server wrote to c's peer and to the bystander. */
static void fz_drain_both(int peer)
{
	fz_drain(peer);
	if (fz.bystander_peer >= 0)
		fz_drain(fz.bystander_peer);
}

/* Loop thread: feeds b[n] to c in chunks as reads would deliver them, the
 * writes and reaping after each. Returns false once c is closed (and
 * freed: do not touch it again). */
static bool fz_feed(struct derp_conn *c, int peer, const uint8_t *b, size_t n, size_t chunk)
{
	if (!chunk)
		chunk = n ? n : 1;
	size_t k = 0;
	for (size_t off = 0; off < n; off += chunk, k++) {
		size_t len = n - off < chunk ? n - off : chunk;
		derp_conn_on_bytes(c, b + off, len);
		bool closed = c->closing;
		derp_srv_settle(fz.srv);
		if (closed || k % FZ_DRAIN_EVERY == FZ_DRAIN_EVERY - 1)
			fz_drain_both(peer);
		if (closed)
			return false;
	}
	fz_drain_both(peer);
	return true;
}

static void fz_bystander_check(void);

/* Loop thread, the end of an input: closes c (if still open), reaps it, and
 * brings the bystander back if the input closed it. */
static void fz_conn_end(struct derp_conn *c, bool open, int peer)
{
	if (open && !c->closing)
		derp_conn_close(c, CR_DONE);
	derp_srv_settle(fz.srv);
	close(peer);
	fz_bystander_check();
}

static void fz_bystander_up(void)
{
	uint8_t ci[FZ_CI_MAX];
	struct derp_conn *c = fz_conn_new(&fz.bystander_peer);
	size_t n = fz_client_info(ci, sizeof(ci), FZ_BYSTANDER, false);
	if (!fz_feed(c, fz.bystander_peer, (const uint8_t *)fz.head, fz.head_len, 0) ||
	    !fz_feed(c, fz.bystander_peer, ci, n, 0) || c->state != CS_ACTIVE)
		fz_die("the bystander did not register");
	fz.bystander = c;
}

/* Loop thread: whether the bystander is still registered (an input can
 * close it: ClosePeer with the mesh key, deadlines). */
static bool fz_bystander_alive(void)
{
	struct derp_peer *p = derp_peer_find(fz.srv, fz.pub[FZ_BYSTANDER]);
	if (p)
		for (struct derp_conn *k = p->conns; k; k = k->key_next)
			if (k == fz.bystander && !k->closing)
				return true;
	return false;
}

/* Loop thread: after an input, recreate the bystander if the input closed it. */
static void fz_bystander_check(void)
{
	if (fz_bystander_alive()) {
		fz_drain(fz.bystander_peer);
		return;
	}
	close(fz.bystander_peer);
	fz.bystander_peer = -1;
	fz_bystander_up();
}

static void fz_start_on_loop(rt_t *rt, void *arg)
{
	(void)rt;
	(void)arg;
	fz_bystander_up();
}

static void fz_init(void)
{
	if (fz.rt)
		return;
	for (int k = 0; k < FZ_NKEYS; k++) {
		memset(fz.priv[k], 0x21 + k, DERP_KEY_LEN);
		if (derp_key_public(fz.priv[k], fz.pub[k]) < 0)
			fz_die("client key");
	}
	if (derp_key_public(FZ_SERVER_PRIV, fz.server_pub) < 0)
		fz_die("server key");
	char allow[] = "/tmp/spanza-fuzz-allowlist-XXXXXX";
	int afd = mkstemp(allow);
	if (afd < 0)
		fz_die("mkstemp");
	FILE *f = fdopen(afd, "w");
	char text[DERP_KEY_TEXT_MAX];
	derp_key_to_text(text, sizeof(text), "nodekey:", fz.pub[FZ_ALLOWED]);
	fprintf(f, "# fuzz allowlist\n%s\n", text);
	derp_key_to_text(text, sizeof(text), "", fz.pub[FZ_BYSTANDER]);
	fprintf(f, "  %s  # bare hex\n", text);
	fclose(f);

	fz.rt = rt_new("fuzz");
	if (!fz.rt)
		fz_die("rt_new");
	struct derp_server_config cfg = {
		.host = "127.0.0.1",
		.has_private_key = 1,
		.has_mesh_key = 1,
		.allowlist_file = allow,
	};
	memcpy(cfg.private_key, FZ_SERVER_PRIV, DERP_KEY_LEN);
	memcpy(cfg.mesh_key, FZ_MESH_KEY, DERP_KEY_LEN);
	char err[256];
	if (derp_server_new(fz.rt, &cfg, &fz.srv, err, sizeof(err)) < 0)
		fz_die(err);
	unlink(allow);
	fz.head_len = derp_http_upgrade_request(fz.head, sizeof(fz.head), "derp.example", false, NULL);
	fz.head_fast_len = derp_http_upgrade_request(fz.head_fast, sizeof(fz.head_fast), "derp.example", true, NULL);
	if (!fz.head_len || !fz.head_fast_len)
		fz_die("upgrade request");
	fz.bystander_peer = -1;
	rt_call(fz.rt, fz_start_on_loop, NULL);
	rt_park(fz.rt);
	fz_parked = true;
}

struct fz_input {
	const uint8_t *data;
	size_t size;
};

/* The targets' LLVMFuzzerTestOneInput: inputs shorter than their two
 * header bytes are skipped; run gets a struct fz_input (on this thread:
 * the loop is parked). */
static int fz_fuzz_one(rt_fn run, const uint8_t *data, size_t size)
{
	fz_init();
	if (size < 2)
		return 0;
	struct fz_input in = {.data = data, .size = size};
	run(fz.rt, &in);
	return 0;
}

#endif
