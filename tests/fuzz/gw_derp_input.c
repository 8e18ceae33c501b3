/* libFuzzer: the gateway's DERP-side input. Bytes from the relay go through
 * the DERP client's protocol core (HTTP response, handshake, frames) and
 * each RecvPacket to the gateway's packet path (gw_on_derp_packet: peer
 * lookup by key, where the packet goes, the UDP send to the local
 * WireGuard), on real gateways with real sockets on their runtime.
 *
 * Three gateways, so every destination kind is reached: one with a
 * configured WireGuard endpoint (a sink socket); one without, where one peer
 * learned the sink's address from a datagram (and the others use it as the
 * last sender); one that knows no address at all. Their peers'
 * keys are 32 bytes of 0x01, 0x02 and 0x03 (the seeds use them); any other
 * source key is a stranger. Their DERP clients point at a closed port and
 * never connect: the input is fed here instead, from the fuzzing thread
 * once the runtime's loop is parked (rt_park.h).
 *
 * Input: byte 0: bits 0-1 pick the gateway (mod 3), bit 2 starts at the HTTP response
 * (else the handshake is taken as done); byte 1 is the chunk size; the rest
 * is what the relay sent. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "derp/client_proto.h"
#include "gateway/impl.h"
#include "rt_park.h"

#define NPEERS 3
#define NGW 3
#define DRAIN_BUF 65536

static struct {
	rt_t *rt;
	gw_t *g[NGW];
	int sink;
	uint8_t priv[32], pub[32];
} h;

static void die(const char *what)
{
	fprintf(stderr, "fuzz harness: %s\n", what);
	abort();
}

static void drain(int fd)
{
	static uint8_t buf[DRAIN_BUF];
	for (int i = 0; i < 256; i++)
		if (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) < 0)
			return;
}

static int w(void *arg, const uint8_t *buf, size_t len)
{
	(void)arg;
	(void)buf;
	(void)len;
	return 0;
}

static void connected(void *arg, const uint8_t server_pub[32], const struct derp_server_info *si)
{
	(void)arg;
	(void)server_pub;
	(void)si;
}

static void event(void *arg, const struct derp_client_event *ev)
{
	(void)arg;
	(void)ev;
}

static const struct derp_cp_ops ops = {.write = w, .connected = connected, .packet = gw_on_derp_packet, .event = event};

struct run {
	const uint8_t *data;
	size_t size;
};

static void run(void *arg)
{
	struct run *r = arg;
	struct gw *g = h.g[(r->data[0] & 3) % NGW];
	size_t chunk = r->data[1] ? r->data[1] : r->size;
	static struct derp_cproto cp; /* large (an HTTP head buffer): not on the stack */
	derp_cp_init(&cp, h.priv, h.pub, NULL);
	if (!(r->data[0] & 4)) {
		memcpy(cp.server_pub, h.pub, 32); /* any key: frames reach the dispatcher */
		cp.phase = DERP_CP_RUN;
	}
	for (size_t off = 2; off < r->size; off += chunk) {
		size_t n = r->size - off < chunk ? r->size - off : chunk;
		if (derp_cp_input(&cp, r->data + off, n, &ops, g) < 0)
			break;
	}
	derp_cp_free(&cp);
	drain(h.sink);
}

static void sockaddr_of(int fd, struct gw_addr *a)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0 || gw_addr_from_sockaddr(a, (struct sockaddr *)&ss) < 0)
		die("getsockname");
}

static void init(void)
{
	h.rt = rt_new("fuzz");
	if (!h.rt)
		die("rt_new");
	memset(h.priv, 0x44, sizeof(h.priv));
	if (derp_key_public(h.priv, h.pub) < 0)
		die("key");
	h.sink = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in lo = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	if (h.sink < 0 || bind(h.sink, (struct sockaddr *)&lo, sizeof(lo)) < 0)
		die("sink socket");
	struct gw_addr sink, listen = {.family = AF_INET, .addr = {127, 0, 0, 1}}, bound;
	sockaddr_of(h.sink, &sink);
	struct derp_client_opts opts = {0};
	char err[256];
	int rc;
	for (int i = 0; i < NGW; i++) {
		h.g[i] = gw_py_new(h.rt, "http://127.0.0.1:1", h.priv, &opts, i == 0 ? &sink : NULL, &rc, err,
				   sizeof(err));
		if (!h.g[i])
			die(err);
		for (int k = 0; k < NPEERS; k++) {
			uint8_t key[32];
			memset(key, k + 1, sizeof(key));
			if (gw_py_add_peer(h.g[i], key, &listen, &bound, err, sizeof(err)) < 0)
				die(err);
			if (i == 1 && k == 0) {
				/* The local WireGuard speaks first: this peer learns the sink. */
				struct sockaddr_storage ss;
				socklen_t sl;
				gw_addr_to_sockaddr(&bound, &ss, &sl);
				if (sendto(h.sink, "hello", 5, 0, (struct sockaddr *)&ss, sl) != 5)
					die("sendto");
			}
		}
	}
	/* Let the loop read that datagram (gw_on_udp). */
	for (int i = 0; i < 100; i++) {
		struct gw_peer_stats st;
		uint8_t key[32];
		memset(key, 1, sizeof(key));
		gw_py_peer_stats(h.g[1], key, &st);
		if (st.dst_kind == GW_DST_LEARNED) {
			rt_park(h.rt);
			return;
		}
		usleep(10000);
	}
	die("the gateway did not learn the sink's address");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!h.rt)
		init();
	if (size < 2)
		return 0;
	struct run r = {.data = data, .size = size};
	run(&r);
	return 0;
}
