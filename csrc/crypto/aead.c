/* Transport AEAD (see aead.h). ChaCha20-Poly1305 computes its one-time
 * Poly1305 key as block 0 of the same ChaCha20 stream whose blocks 1..
 * encrypt the text (RFC 8439 2.6, 2.8). OpenSSL's AEAD does that in three
 * cipher calls per message (the key block, the whole blocks, the partial
 * tail), a quarter of the time at WireGuard's 1420 bytes; here one call
 * covers [64 zero bytes | text] rounded up to whole blocks, and Poly1305
 * runs over the result in one update. */
#include "crypto/aead.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "crypto/crypto.h"
#include "crypto/crypto_py.h"

#define CHACHA_BLOCK 64
#define CHACHA_IV_LEN 16 /* OpenSSL's ChaCha20 IV: block counter (LE32) || 96-bit nonce */
#define POLY_KEY_LEN 32
#define POLY_BLOCK 16
#define POLY_LENGTHS 16 /* le64(AAD length) || le64(ciphertext length) */

_Static_assert(SPZ_AEAD_HEADROOM == CHACHA_BLOCK, "the headroom is the key block");
_Static_assert(SPZ_AEAD_TAILROOM >= CHACHA_BLOCK - 1 && SPZ_AEAD_TAILROOM >= POLY_BLOCK - 1 + POLY_LENGTHS,
	       "the tailroom holds the last block's overhang and Poly1305's padding and lengths");

static EVP_CIPHER *chacha;
static EVP_MAC *poly;
static pthread_once_t fetch_once = PTHREAD_ONCE_INIT;

static void fetch(void)
{
	chacha = EVP_CIPHER_fetch(NULL, "ChaCha20", NULL);
	poly = EVP_MAC_fetch(NULL, "POLY1305", NULL);
}

int spz_aead_init(struct spz_aead *a, const uint8_t key[SPZ_AEAD_KEY_LEN])
{
	static const uint8_t iv[CHACHA_IV_LEN];
	pthread_once(&fetch_once, fetch);
	a->cipher = a->mac = NULL;
	if (!chacha || !poly)
		return -EIO;
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	EVP_MAC_CTX *m = EVP_MAC_CTX_new(poly);
	if (!c || !m) {
		EVP_CIPHER_CTX_free(c);
		EVP_MAC_CTX_free(m);
		return -ENOMEM;
	}
	/* A stream cipher: encrypting is decrypting, one direction serves. */
	if (!EVP_CipherInit_ex2(c, chacha, key, iv, 1, NULL)) {
		EVP_CIPHER_CTX_free(c);
		EVP_MAC_CTX_free(m);
		return -EIO;
	}
	a->cipher = c;
	a->mac = m;
	return 0;
}

void spz_aead_free(struct spz_aead *a)
{
	/* The _free functions cleanse the key schedule and the MAC state. */
	EVP_CIPHER_CTX_free(a->cipher);
	EVP_MAC_CTX_free(a->mac);
	a->cipher = a->mac = NULL;
}

static size_t round_up(size_t n, size_t to) { return (n + to - 1) / to * to; }

static void put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* text[-64..0) = the Poly1305 key block, text[0..n) ^= the stream from
 * block 1 (and up to 63 bytes after n, which callers overwrite). */
static bool chacha_pass(EVP_CIPHER_CTX *c, uint64_t counter, uint8_t *text, size_t n)
{
	uint8_t iv[CHACHA_IV_LEN] = {0}; /* block 0, nonce 0^32 || counter (LE) */
	put_le64(iv + 8, counter);
	uint8_t *start = text - CHACHA_BLOCK;
	size_t total = CHACHA_BLOCK + round_up(n, CHACHA_BLOCK);
	int outl = 0;
	memset(start, 0, CHACHA_BLOCK);
	if (total <= INT_MAX && EVP_CipherInit_ex2(c, NULL, NULL, iv, 1, NULL) &&
	    EVP_CipherUpdate(c, start, &outl, start, (int)total) && (size_t)outl == total)
		return true;
	spz_wipe(start, CHACHA_BLOCK); /* whatever of the key block was made */
	return false;
}

static bool poly_begin(EVP_MAC_CTX *m, uint8_t *text)
{
	bool ok = EVP_MAC_init(m, text - CHACHA_BLOCK, POLY_KEY_LEN, NULL) == 1;
	spz_wipe(text - CHACHA_BLOCK, CHACHA_BLOCK);
	return ok;
}

bool spz_aead_seal(struct spz_aead *a, uint64_t counter, const uint8_t *in, size_t len, size_t pad, uint8_t *out)
{
	size_t n = len + pad, tail = round_up(n, POLY_BLOCK) - n;
	size_t tl = 0;
	if (!a->cipher || len > INT_MAX || pad > POLY_BLOCK)
		return false;
	if (len && in != out) /* a keepalive has no text (and may have no pointer) */
		memcpy(out, in, len);
	memset(out + len, 0, pad);
	if (!chacha_pass(a->cipher, counter, out, n) || !poly_begin(a->mac, out))
		return false;
	/* Poly1305 over ciphertext || zero padding || lengths, laid out
	 * after the ciphertext (the tag's place) to hash in one update. */
	memset(out + n, 0, tail);
	put_le64(out + n + tail, 0);
	put_le64(out + n + tail + 8, n);
	return EVP_MAC_update(a->mac, out, n + tail + POLY_LENGTHS) == 1 &&
	       EVP_MAC_final(a->mac, out + n, &tl, SPZ_AEAD_TAG_LEN) == 1 && tl == SPZ_AEAD_TAG_LEN;
}

bool spz_aead_open(struct spz_aead *a, uint64_t counter, const uint8_t *in, size_t len, uint8_t *out)
{
	static const uint8_t zeros[POLY_BLOCK];
	uint8_t lengths[POLY_LENGTHS], tag[SPZ_AEAD_TAG_LEN];
	size_t tl = 0;
	if (!a->cipher || len < SPZ_AEAD_TAG_LEN || len - SPZ_AEAD_TAG_LEN > INT_MAX)
		return false;
	size_t n = len - SPZ_AEAD_TAG_LEN, tail = round_up(n, POLY_BLOCK) - n;
	/* Decrypt a copy in out (one pass gives the key too), then check the
	 * tag over the ciphertext still in `in`. */
	if (n)
		memcpy(out, in, n);
	if (!chacha_pass(a->cipher, counter, out, n) || !poly_begin(a->mac, out))
		goto fail;
	put_le64(lengths, 0);
	put_le64(lengths + 8, n);
	if (EVP_MAC_update(a->mac, in, n) != 1 || EVP_MAC_update(a->mac, zeros, tail) != 1 ||
	    EVP_MAC_update(a->mac, lengths, sizeof(lengths)) != 1 ||
	    EVP_MAC_final(a->mac, tag, &tl, sizeof(tag)) != 1 || tl != sizeof(tag) ||
	    CRYPTO_memcmp(tag, in + n, sizeof(tag)) != 0)
		goto fail;
	return true;
fail:
	spz_wipe(out, n); /* no unauthenticated plaintext left behind */
	return false;
}

/* ---- for tests (crypto_py.h): one message on buffers with the room ---- */

static uint8_t *room_new(size_t len) { return malloc(SPZ_AEAD_HEADROOM + len + SPZ_AEAD_TAILROOM); }

int spz_transport_seal(uint8_t *out, const uint8_t *key, uint64_t counter, const uint8_t *in, size_t len, size_t pad)
{
	struct spz_aead a;
	if (pad > POLY_BLOCK || len > INT_MAX)
		return -EINVAL;
	uint8_t *buf = room_new(len + pad + SPZ_AEAD_TAG_LEN);
	int rc = buf ? spz_aead_init(&a, key) : -ENOMEM;
	if (rc == 0) {
		rc = spz_aead_seal(&a, counter, in, len, pad, buf + SPZ_AEAD_HEADROOM) ? 0 : -EIO;
		spz_aead_free(&a);
	}
	if (rc == 0)
		memcpy(out, buf + SPZ_AEAD_HEADROOM, len + pad + SPZ_AEAD_TAG_LEN);
	free(buf);
	return rc;
}

int spz_transport_open(uint8_t *out, const uint8_t *key, uint64_t counter, const uint8_t *in, size_t len)
{
	struct spz_aead a;
	if (len < SPZ_AEAD_TAG_LEN)
		return -EINVAL;
	uint8_t *buf = room_new(len);
	int rc = buf ? spz_aead_init(&a, key) : -ENOMEM;
	if (rc == 0) {
		rc = spz_aead_open(&a, counter, in, len, buf + SPZ_AEAD_HEADROOM) ? 0 : -EINVAL;
		spz_aead_free(&a);
	}
	if (rc == 0)
		memcpy(out, buf + SPZ_AEAD_HEADROOM, len - SPZ_AEAD_TAG_LEN);
	free(buf);
	return rc;
}
