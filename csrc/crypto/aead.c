/* Transport AEAD over OpenSSL EVP ChaCha20-Poly1305. The key is installed
 * once; each packet only sets the nonce (4 zero bytes || counter LE). */
#include "crypto/aead.h"

#include <errno.h>
#include <pthread.h>
#include <limits.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>

#include "crypto/crypto.h"

static EVP_CIPHER *cipher;
static pthread_once_t cipher_once = PTHREAD_ONCE_INIT;

static void fetch_cipher(void) { cipher = EVP_CIPHER_fetch(NULL, "ChaCha20-Poly1305", NULL); }

int spz_aead_init(struct spz_aead *a, const uint8_t key[SPZ_AEAD_KEY_LEN], bool encrypt)
{
	pthread_once(&cipher_once, fetch_cipher);
	a->ctx = NULL;
	if (!cipher)
		return -EIO;
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	if (!c)
		return -ENOMEM;
	uint8_t iv[SPZ_AEAD_NONCE_LEN] = {0};
	if (!EVP_CipherInit_ex2(c, cipher, key, iv, encrypt ? 1 : 0, NULL)) {
		EVP_CIPHER_CTX_free(c);
		return -EIO;
	}
	a->ctx = c;
	return 0;
}

void spz_aead_free(struct spz_aead *a)
{
	/* EVP_CIPHER_CTX_free cleanses the key schedule. */
	EVP_CIPHER_CTX_free(a->ctx);
	a->ctx = NULL;
}

static void nonce12(uint8_t n[SPZ_AEAD_NONCE_LEN], uint64_t counter)
{
	memset(n, 0, 4);
	for (int i = 0; i < 8; i++)
		n[4 + i] = (uint8_t)(counter >> (8 * i));
}

bool spz_aead_seal(struct spz_aead *a, uint64_t counter, const uint8_t *in, size_t len, size_t pad, uint8_t *out)
{
	static const uint8_t zeros[SPZ_AEAD_TAG_LEN];
	EVP_CIPHER_CTX *c = a->ctx;
	uint8_t iv[SPZ_AEAD_NONCE_LEN];
	int n = 0, f = 0;
	if (!c || len > INT_MAX || pad > sizeof(zeros))
		return false;
	nonce12(iv, counter);
	if (!EVP_CipherInit_ex2(c, NULL, NULL, iv, 1, NULL))
		return false;
	if (len && !EVP_CipherUpdate(c, out, &n, in, (int)len))
		return false;
	/* Padding goes through the same stream: no copy of the packet. */
	int m = 0;
	if (pad && !EVP_CipherUpdate(c, out + n, &m, zeros, (int)pad))
		return false;
	if (!EVP_CipherFinal_ex(c, out + n + m, &f))
		return false;
	size_t total = (size_t)n + (size_t)m + (size_t)f;
	if (total != len + pad)
		return false;
	/* The tag straight from the provider: EVP_CIPHER_CTX_ctrl would build
	 * this parameter array per call and look up lengths first. */
	OSSL_PARAM tag[2] = {
		OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, out + total, SPZ_AEAD_TAG_LEN),
		OSSL_PARAM_construct_end()};
	return EVP_CIPHER_CTX_get_params(c, tag) == 1;
}

bool spz_aead_open(struct spz_aead *a, uint64_t counter, const uint8_t *in, size_t len, uint8_t *out)
{
	EVP_CIPHER_CTX *c = a->ctx;
	uint8_t iv[SPZ_AEAD_NONCE_LEN];
	int n = 0, f = 0;
	if (!c || len < SPZ_AEAD_TAG_LEN || len - SPZ_AEAD_TAG_LEN > INT_MAX)
		return false;
	size_t clen = len - SPZ_AEAD_TAG_LEN;
	nonce12(iv, counter);
	if (!EVP_CipherInit_ex2(c, NULL, NULL, iv, 0, NULL))
		return false;
	OSSL_PARAM tag[2] = {
		OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, (void *)(in + clen), SPZ_AEAD_TAG_LEN),
		OSSL_PARAM_construct_end()};
	if (EVP_CIPHER_CTX_set_params(c, tag) != 1)
		return false;
	if (clen && !EVP_CipherUpdate(c, out, &n, in, (int)clen))
		return false;
	if (EVP_CipherFinal_ex(c, out + n, &f) != 1) {
		/* Do not leave unauthenticated plaintext behind. */
		spz_wipe(out, clen);
		return false;
	}
	return (size_t)n + (size_t)f == clen;
}
