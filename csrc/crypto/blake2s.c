/* BLAKE2s through OpenSSL 3: hash, keyed 16-byte MAC, HMAC, HKDF.
 * The algorithms are fetched once per process; the contexts (which carry
 * per-call key state) are per thread, freed when the thread exits. */
#include "crypto/crypto.h"

#include <errno.h>
#include <pthread.h>
#include <sodium.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "base/log.h"

static pthread_once_t fetch_once = PTHREAD_ONCE_INIT;
static EVP_MD *md_blake2s;
static EVP_MAC *mac_hmac, *mac_blake2s;
static pthread_key_t tls_key;
static int init_rc = -EIO;

struct b2_tls {
	EVP_MD_CTX *md;
	EVP_MAC_CTX *hmac;
	EVP_MAC_CTX *mac16;
};

static void tls_free(void *p)
{
	struct b2_tls *t = p;
	if (!t)
		return;
	EVP_MD_CTX_free(t->md);
	EVP_MAC_CTX_free(t->hmac);
	EVP_MAC_CTX_free(t->mac16);
	free(t);
}

static void fetch_all(void)
{
	if (sodium_init() < 0)
		return;
	md_blake2s = EVP_MD_fetch(NULL, "BLAKE2S-256", NULL);
	mac_hmac = EVP_MAC_fetch(NULL, OSSL_MAC_NAME_HMAC, NULL);
	mac_blake2s = EVP_MAC_fetch(NULL, OSSL_MAC_NAME_BLAKE2SMAC, NULL);
	if (!md_blake2s || !mac_hmac || !mac_blake2s || pthread_key_create(&tls_key, tls_free) != 0) {
		spz_log(SPZ_LOG_ERROR, "crypto", "OpenSSL lacks BLAKE2s/HMAC");
		return;
	}
	init_rc = 0;
}

int spz_crypto_init(void)
{
	pthread_once(&fetch_once, fetch_all);
	return init_rc;
}

/* The calling thread's contexts; aborts only if OpenSSL is unusable (a
 * broken installation, not a runtime condition). */
static struct b2_tls *tls(void)
{
	if (spz_crypto_init() != 0)
		abort();
	struct b2_tls *t = pthread_getspecific(tls_key);
	if (t)
		return t;
	t = calloc(1, sizeof(*t));
	if (!t)
		abort();
	t->md = EVP_MD_CTX_new();
	t->hmac = EVP_MAC_CTX_new(mac_hmac);
	t->mac16 = EVP_MAC_CTX_new(mac_blake2s);
	if (!t->md || !t->hmac || !t->mac16)
		abort();
	OSSL_PARAM hp[] = {
		OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"BLAKE2S-256", 0),
		OSSL_PARAM_construct_end(),
	};
	size_t sz = SPZ_MAC_LEN;
	OSSL_PARAM mp[] = {
		OSSL_PARAM_construct_size_t(OSSL_MAC_PARAM_SIZE, &sz),
		OSSL_PARAM_construct_end(),
	};
	if (!EVP_MAC_CTX_set_params(t->hmac, hp) || !EVP_MAC_CTX_set_params(t->mac16, mp))
		abort();
	pthread_setspecific(tls_key, t);
	return t;
}

void spz_hash(uint8_t out[SPZ_HASH_LEN], const void *a, size_t alen, const void *b, size_t blen, const void *c,
	      size_t clen)
{
	struct b2_tls *t = tls();
	unsigned int n = 0;
	if (!EVP_DigestInit_ex(t->md, md_blake2s, NULL) || !EVP_DigestUpdate(t->md, a, alen) ||
	    (b && !EVP_DigestUpdate(t->md, b, blen)) || (c && !EVP_DigestUpdate(t->md, c, clen)) ||
	    !EVP_DigestFinal_ex(t->md, out, &n) || n != SPZ_HASH_LEN)
		abort();
}

void spz_mac(uint8_t out[SPZ_MAC_LEN], const uint8_t *key, size_t keylen, const void *msg, size_t len)
{
	struct b2_tls *t = tls();
	size_t n = 0;
	if (!EVP_MAC_init(t->mac16, key, keylen, NULL) || !EVP_MAC_update(t->mac16, msg, len) ||
	    !EVP_MAC_final(t->mac16, out, &n, SPZ_MAC_LEN) || n != SPZ_MAC_LEN)
		abort();
}

void spz_hmac(uint8_t out[SPZ_HASH_LEN], const uint8_t *key, size_t keylen, const void *a, size_t alen, const void *b,
	      size_t blen)
{
	static const uint8_t empty[1];
	struct b2_tls *t = tls();
	size_t n = 0;
	if (!EVP_MAC_init(t->hmac, keylen ? key : empty, keylen, NULL) || !EVP_MAC_update(t->hmac, a, alen) ||
	    (b && !EVP_MAC_update(t->hmac, b, blen)) || !EVP_MAC_final(t->hmac, out, &n, SPZ_HASH_LEN) ||
	    n != SPZ_HASH_LEN)
		abort();
}

void spz_kdf_any(uint8_t *t1, uint8_t *t2, uint8_t *t3, const uint8_t *key, size_t keylen, const void *in, size_t inlen)
{
	uint8_t prk[SPZ_HASH_LEN], out[SPZ_HASH_LEN], ctr;
	spz_hmac(prk, key, keylen, in, inlen, NULL, 0);
	ctr = 1;
	spz_hmac(out, prk, SPZ_HASH_LEN, &ctr, 1, NULL, 0);
	memcpy(t1, out, SPZ_HASH_LEN);
	if (t2) {
		ctr = 2;
		spz_hmac(out, prk, SPZ_HASH_LEN, out, SPZ_HASH_LEN, &ctr, 1);
		memcpy(t2, out, SPZ_HASH_LEN);
	}
	if (t2 && t3) {
		ctr = 3;
		spz_hmac(out, prk, SPZ_HASH_LEN, out, SPZ_HASH_LEN, &ctr, 1);
		memcpy(t3, out, SPZ_HASH_LEN);
	}
	spz_wipe(prk, sizeof(prk));
	spz_wipe(out, sizeof(out));
}

void spz_kdf(uint8_t *t1, uint8_t *t2, uint8_t *t3, const uint8_t key[SPZ_HASH_LEN], const void *in, size_t inlen)
{
	spz_kdf_any(t1, t2, t3, key, SPZ_HASH_LEN, in, inlen);
}

void spz_blake2s256(uint8_t *out, const uint8_t *msg, size_t len) { spz_hash(out, msg, len, NULL, 0, NULL, 0); }

int spz_blake2s_mac16(uint8_t *out, const uint8_t *key, size_t keylen, const uint8_t *msg, size_t len)
{
	if (keylen < 1 || keylen > SPZ_HASH_KEY_MAX)
		return -EINVAL;
	spz_mac(out, key, keylen, msg, len);
	return 0;
}

void spz_hkdf3(uint8_t *out96, const uint8_t *key, size_t keylen, const uint8_t *in, size_t inlen)
{
	spz_kdf_any(out96, out96 + SPZ_HASH_LEN, out96 + 2 * SPZ_HASH_LEN, key, keylen, in, inlen);
}
