/* WireGuard core benchmark: handshakes per second and transport throughput
 * for 1420-byte packets through the core, beside a raw OpenSSL EVP
 * ChaCha20-Poly1305 loop on the same machine. One thread, one core.
 * Build and run: make wg-bench (or bench/wg_bench.py, which adds openssl speed). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <sodium.h>

#include "crypto/aead.h"
#include "wg/wg.h"

#define PKT 1420

struct side {
	wg_device *dev;
	struct side *other;
	wg_endpoint self;
	uint64_t now, wall;
	uint64_t delivered_bytes, delivered;
	int forward; /* 1: hand datagrams straight to the other device */
};

static double secs(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void on_send(void *ctx, wg_peer *peer, const wg_endpoint *to, const uint8_t *data, size_t len)
{
	struct side *s = ctx;
	if (s->forward)
		wg_device_receive(s->other->dev, s->other->now, &s->self, data, len);
}

static void on_deliver(void *ctx, wg_peer *peer, const uint8_t *ip, size_t len)
{
	struct side *s = ctx;
	s->delivered++;
	s->delivered_bytes += len;
}

static uint64_t on_wall(void *ctx) { return ((struct side *)ctx)->wall; }

static void setup(struct side *a, struct side *b, wg_peer **pa)
{
	uint8_t ka[32], kb[32], pub[32], ip[4] = {10, 0, 0, 0};
	memset(a, 0, sizeof(*a));
	memset(b, 0, sizeof(*b));
	a->other = b;
	b->other = a;
	a->wall = b->wall = 1700000000ULL * 1000000000ULL;
	a->forward = b->forward = 1;
	struct wg_ops oa = {.ctx = a, .send = on_send, .deliver = on_deliver, .wall_ns = on_wall};
	struct wg_ops ob = {.ctx = b, .send = on_send, .deliver = on_deliver, .wall_ns = on_wall};
	a->dev = wg_device_new(&oa);
	b->dev = wg_device_new(&ob);
	memset(ka, 1, 32);
	memset(kb, 2, 32);
	wg_device_set_private_key(a->dev, 0, ka);
	wg_device_set_private_key(b->dev, 0, kb);
	a->self.family = b->self.family = WG_AF_INET;
	a->self.port = 1;
	b->self.port = 2;
	wg_peer *pb = NULL;
	wg_device_public_key(b->dev, pub);
	wg_peer_add(a->dev, pub, pa);
	wg_peer_set_endpoint(*pa, &b->self);
	ip[3] = 2;
	wg_peer_allowed_ip_add(a->dev, *pa, WG_AF_INET, ip, 32);
	wg_device_public_key(a->dev, pub);
	wg_peer_add(b->dev, pub, &pb);
	wg_peer_set_endpoint(pb, &a->self);
	ip[3] = 1;
	wg_peer_allowed_ip_add(b->dev, pb, WG_AF_INET, ip, 32);
}

static void bench_handshakes(void)
{
	struct side a, b;
	wg_peer *pa;
	setup(&a, &b, &pa);
	int n = 4000;
	double t0 = secs();
	for (int i = 0; i < n; i++) {
		/* 20 ms apart (per-peer consume limit), timestamps growing. */
		a.now = b.now = (uint64_t)i * 20 + 20;
		a.wall = b.wall += 20000000ULL;
		wg_peer_initiate(a.dev, pa, a.now, 1);
	}
	double dt = secs() - t0;
	struct wg_device_stats st;
	wg_device_stats(a.dev, &st);
	printf("handshakes: %llu complete in %.3f s = %.0f handshakes/s (initiation+response+keepalive, both sides, "
	       "one core)\n",
	       (unsigned long long)st.handshakes_completed, dt, (double)st.handshakes_completed / dt);
	wg_device_free(a.dev);
	wg_device_free(b.dev);
}

static uint8_t packet[PKT];

static void make_packet(void)
{
	memset(packet, 0xab, sizeof(packet));
	packet[0] = 0x45;
	packet[2] = PKT >> 8;
	packet[3] = PKT & 0xff;
	packet[12] = 10, packet[13] = 0, packet[14] = 0, packet[15] = 1;
	packet[16] = 10, packet[17] = 0, packet[18] = 0, packet[19] = 2;
}

static void bench_transport(void)
{
	struct side a, b;
	wg_peer *pa;
	setup(&a, &b, &pa);
	make_packet();
	wg_device_send(a.dev, 0, packet, PKT); /* handshake + first packet */
	int n = 400000;
	double t0 = secs();
	for (int i = 0; i < n; i++)
		wg_device_send(a.dev, 1, packet, PKT);
	double dt = secs() - t0;
	double mb = (double)b.delivered_bytes / 1e6;
	printf("core encrypt+decrypt: %llu x %d-byte packets in %.3f s = %.0f MB/s (%.2f Gbit/s), %.2f us/packet\n",
	       (unsigned long long)b.delivered - 1, PKT, dt, (double)n * PKT / 1e6 / dt, (double)n * PKT * 8 / 1e9 / dt,
	       dt * 1e6 / n);
	(void)mb;
	a.forward = 0; /* encrypt only: datagrams go nowhere */
	t0 = secs();
	for (int i = 0; i < n; i++)
		wg_device_send(a.dev, 1, packet, PKT);
	dt = secs() - t0;
	printf("core encrypt only:    %d packets in %.3f s = %.0f MB/s (%.2f Gbit/s)\n", n, dt,
	       (double)n * PKT / 1e6 / dt, (double)n * PKT * 8 / 1e9 / dt);
	wg_device_free(a.dev);
	wg_device_free(b.dev);
}

/* One packet sealed the plain EVP way: nonce i, then update, final, tag. */
static void raw_seal(EVP_CIPHER_CTX *enc, uint8_t iv[12], int i, uint8_t *out, uint8_t tag[16])
{
	int len;
	memcpy(iv + 4, &i, sizeof(i));
	EVP_CipherInit_ex2(enc, NULL, NULL, iv, 1, NULL);
	EVP_CipherUpdate(enc, out, &len, packet, PKT);
	EVP_CipherFinal_ex(enc, out + len, &len);
	EVP_CIPHER_CTX_ctrl(enc, EVP_CTRL_AEAD_GET_TAG, 16, tag);
}

static void bench_raw_evp(void)
{
	EVP_CIPHER *c = EVP_CIPHER_fetch(NULL, "ChaCha20-Poly1305", NULL);
	EVP_CIPHER_CTX *enc = EVP_CIPHER_CTX_new(), *dec = EVP_CIPHER_CTX_new();
	uint8_t key[32] = {1}, iv[12] = {0}, out[PKT + 16], back[PKT], tag[16];
	int len, n = 400000;
	EVP_CipherInit_ex2(enc, c, key, iv, 1, NULL);
	EVP_CipherInit_ex2(dec, c, key, iv, 0, NULL);
	make_packet();
	double t0 = secs();
	for (int i = 0; i < n; i++)
		raw_seal(enc, iv, i, out, tag);
	double de = secs() - t0;
	t0 = secs();
	int ok = 0;
	for (int i = 0; i < n; i++) {
		raw_seal(enc, iv, i, out, tag);
		EVP_CipherInit_ex2(dec, NULL, NULL, iv, 0, NULL);
		EVP_CIPHER_CTX_ctrl(dec, EVP_CTRL_AEAD_SET_TAG, 16, tag);
		EVP_CipherUpdate(dec, back, &len, out, PKT);
		ok += EVP_CipherFinal_ex(dec, back + len, &len);
	}
	double dd = secs() - t0;
	printf("raw EVP encrypt only: %.0f MB/s (%.2f Gbit/s)\n", (double)n * PKT / 1e6 / de,
	       (double)n * PKT * 8 / 1e9 / de);
	printf("raw EVP encrypt+decrypt: %.0f MB/s (%.2f Gbit/s)%s\n", (double)n * PKT / 1e6 / dd,
	       (double)n * PKT * 8 / 1e9 / dd, ok == n ? "" : " (DECRYPT FAILED)");
	EVP_CIPHER_CTX_free(enc);
	EVP_CIPHER_CTX_free(dec);
	EVP_CIPHER_free(c);
}

/* CPU time of this thread: `openssl speed` divides by user CPU time, so the
 * AEAD figures below use the same clock and stay comparable on a loaded
 * machine (wall time would charge us for other processes' slices). */
static double cpu_secs(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void aead_line(const char *what, int n, double dt)
{
	printf("aead %-34s %6.0f MB/s  (%.0f ns/packet, CPU time)\n", what, (double)n * PKT / 1e6 / dt, dt * 1e9 / n);
}

/* The data-path AEAD alone, one 1420-byte packet per call as WireGuard
 * uses it (a fresh nonce each time), beside libsodium's and beside the very
 * loop `openssl speed -aead -evp chacha20-poly1305` runs (nonce reset,
 * 13-byte AAD, in place). bench/wg_bench.py adds openssl speed's figure. */
static void bench_aead(void)
{
	/* As the device's buffers: the AEAD's room around each (crypto/aead.h). */
	static uint8_t buf_room[SPZ_AEAD_HEADROOM + PKT + SPZ_AEAD_TAG_LEN + SPZ_AEAD_TAILROOM]
		__attribute__((aligned(64)));
	static uint8_t ct_room[SPZ_AEAD_HEADROOM + PKT + SPZ_AEAD_TAG_LEN + SPZ_AEAD_TAILROOM]
		__attribute__((aligned(64)));
	uint8_t *buf = buf_room + SPZ_AEAD_HEADROOM, *ct = ct_room + SPZ_AEAD_HEADROOM;
	uint8_t key[32] = {7};
	struct spz_aead enc, dec;
	int n = 600000, bad = 0;
	if (sodium_init() < 0 || spz_aead_init(&enc, key) || spz_aead_init(&dec, key)) {
		printf("aead: init failed\n");
		return;
	}
	make_packet();
	double t0 = cpu_secs();
	for (int i = 0; i < n; i++)
		spz_aead_seal(&enc, (uint64_t)i, packet, PKT, 0, ct);
	aead_line("spz_aead_seal (OpenSSL EVP):", n, cpu_secs() - t0);
	spz_aead_seal(&enc, 42, packet, PKT, 0, ct);
	uint8_t nonce[SPZ_AEAD_NONCE_LEN] = {[4] = 42}, want[PKT + SPZ_AEAD_TAG_LEN];
	crypto_aead_chacha20poly1305_ietf_encrypt(want, NULL, packet, PKT, NULL, 0, NULL, nonce, key);
	if (memcmp(want, ct, sizeof(want)) != 0)
		printf("aead: spz_aead_seal DIFFERS from libsodium\n");
	t0 = cpu_secs();
	for (int i = 0; i < n; i++)
		bad += !spz_aead_open(&dec, 42, ct, PKT + SPZ_AEAD_TAG_LEN, buf);
	aead_line(bad ? "spz_aead_open (FAILED):" : "spz_aead_open (OpenSSL EVP):", n, cpu_secs() - t0);
	spz_aead_free(&enc);
	spz_aead_free(&dec);

	t0 = cpu_secs();
	for (int i = 0; i < n; i++)
		spz_aead_encrypt(ct, packet, PKT, NULL, 0, (uint64_t)i, key);
	aead_line("libsodium ietf encrypt:", n, cpu_secs() - t0);

	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	uint8_t iv[12] = {0}, aad[13] = {0xcc};
	int outl;
	EVP_EncryptInit_ex(c, EVP_chacha20_poly1305(), NULL, key, iv);
	memcpy(buf, packet, PKT);
	t0 = cpu_secs();
	for (int i = 0; i < n; i++) {
		EVP_EncryptInit_ex(c, NULL, NULL, NULL, iv);
		EVP_EncryptUpdate(c, NULL, &outl, aad, sizeof(aad));
		EVP_EncryptUpdate(c, buf, &outl, buf, PKT);
		EVP_EncryptFinal_ex(c, buf + outl, &outl);
	}
	aead_line("openssl speed's loop, in here:", n, cpu_secs() - t0);
	EVP_CIPHER_CTX_free(c);
}

int main(int argc, char **argv)
{
	if (argc > 1 && !strcmp(argv[1], "aead")) {
		bench_aead();
		return 0;
	}
	bench_handshakes();
	bench_transport();
	bench_raw_evp();
	bench_aead();
	return 0;
}
