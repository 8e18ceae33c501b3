/* DERP keys, NaCl box and the ClientInfo/ServerInfo handshake blobs. */
#include "crypto/crypto.h"
#include "derp/frame.h"
#include "derp/json.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* sodium_init is idempotent and thread-safe; every entry point that needs
 * randomness or the box calls it first. */
static void crypto_init(void)
{
	if (sodium_init() < 0)
		abort(); /* no usable randomness: nothing safe to do */
}

/* ---- keys ---- */

/* Node keys are X25519 keys like WireGuard's: crypto/ makes them. */
void derp_key_generate(uint8_t priv[DERP_KEY_LEN], uint8_t pub[DERP_KEY_LEN])
{
	do {
		spz_random(priv, DERP_KEY_LEN);
		spz_x25519_clamp(priv);
	} while (derp_key_public(priv, pub) < 0);
}

int derp_key_public(const uint8_t priv[DERP_KEY_LEN], uint8_t pub[DERP_KEY_LEN])
{
	if (derp_key_is_zero(priv))
		return -EINVAL;
	return spz_x25519_public(pub, priv);
}

bool derp_key_is_zero(const uint8_t key[DERP_KEY_LEN]) { return sodium_is_zero(key, DERP_KEY_LEN); }

bool derp_key_equal(const uint8_t a[DERP_KEY_LEN], const uint8_t b[DERP_KEY_LEN])
{
	return sodium_memcmp(a, b, DERP_KEY_LEN) == 0;
}

/* ---- box ---- */

int derp_box_seal(uint8_t *out, const uint8_t *msg, size_t len, const uint8_t their_pub[DERP_KEY_LEN],
		  const uint8_t my_priv[DERP_KEY_LEN])
{
	if (derp_key_is_zero(their_pub) || derp_key_is_zero(my_priv) || len > INT32_MAX - DERP_BOX_OVERHEAD)
		return -EINVAL;
	crypto_init();
	randombytes_buf(out, DERP_NONCE_LEN);
	if (crypto_box_easy(out + DERP_NONCE_LEN, msg, len, out, their_pub, my_priv) != 0)
		return -EINVAL;
	return (int)(len + DERP_BOX_OVERHEAD);
}

int derp_box_open(uint8_t *out, const uint8_t *box, size_t blen, const uint8_t their_pub[DERP_KEY_LEN],
		  const uint8_t my_priv[DERP_KEY_LEN])
{
	if (blen < DERP_BOX_OVERHEAD || blen > INT32_MAX || derp_key_is_zero(their_pub))
		return -EBADMSG;
	if (crypto_box_open_easy(out, box + DERP_NONCE_LEN, blen - DERP_NONCE_LEN, box, their_pub, my_priv) != 0)
		return -EBADMSG;
	return (int)(blen - DERP_BOX_OVERHEAD);
}

/* ---- JSON ---- */

static int json_bool(enum derp_json_type t, bool *out)
{
	if (t == DERP_JSON_TRUE)
		*out = true;
	else if (t == DERP_JSON_FALSE)
		*out = false;
	else if (t != DERP_JSON_NULL) /* Go: null leaves the field alone */
		return -EINVAL;
	return 0;
}

static int json_i64(enum derp_json_type t, const char *v, size_t n, int64_t *out)
{
	if (t == DERP_JSON_NULL)
		return 0;
	if (t != DERP_JSON_NUMBER)
		return -EINVAL;
	return derp_json_int(v, n, out);
}

static int ci_member(void *arg, const char *key, enum derp_json_type t, const char *v, size_t n)
{
	struct derp_client_info *ci = arg;
	if (!strcasecmp(key, "meshKey")) {
		/* Exactly 64 hex digits; "" and null are rejected like Go's parser. */
		if (t != DERP_JSON_STRING || spz_hex_decode(ci->mesh_key, DERP_KEY_LEN, v, n) < 0)
			return -EINVAL;
		ci->has_mesh_key = true;
		return 0;
	}
	if (!strcasecmp(key, "version")) {
		int64_t x = ci->version;
		if (json_i64(t, v, n, &x) < 0 || x < INT32_MIN || x > INT32_MAX)
			return -EINVAL;
		ci->version = (int)x;
		return 0;
	}
	if (!strcasecmp(key, "CanAckPings"))
		return json_bool(t, &ci->can_ack_pings);
	if (!strcasecmp(key, "IsProber"))
		return json_bool(t, &ci->is_prober);
	if (!strcasecmp(key, "AppName")) {
		if (t == DERP_JSON_NULL)
			return 0;
		if (t != DERP_JSON_STRING)
			return -EINVAL;
		char tmp[1024];
		if (derp_json_unescape(v, n, tmp, sizeof(tmp)) < 0)
			return 0; /* stats only: an odd name is not a reason to refuse */
		size_t an = strlen(tmp) < sizeof(ci->app_name) - 1 ? strlen(tmp) : sizeof(ci->app_name) - 1;
		memcpy(ci->app_name, tmp, an);
		ci->app_name[an] = 0;
		return 0;
	}
	return 0;
}

size_t derp_client_info_json(char *out, size_t cap, const struct derp_client_info *ci)
{
	char mk[65], app[160];
	size_t o = 0;
	int n;
	n = snprintf(out, cap, "{");
	if (n < 0 || (size_t)n >= cap)
		return 0;
	o = (size_t)n;
	if (ci->has_mesh_key) {
		spz_hex_encode(mk, ci->mesh_key, DERP_KEY_LEN);
		n = snprintf(out + o, cap - o, "\"meshKey\":\"%s\",", mk);
		sodium_memzero(mk, sizeof(mk));
		if (n < 0 || (size_t)n >= cap - o)
			return 0;
		o += (size_t)n;
	}
	if (ci->version) {
		n = snprintf(out + o, cap - o, "\"version\":%d,", ci->version);
		if (n < 0 || (size_t)n >= cap - o)
			return 0;
		o += (size_t)n;
	}
	n = snprintf(out + o, cap - o, "\"CanAckPings\":%s", ci->can_ack_pings ? "true" : "false");
	if (n < 0 || (size_t)n >= cap - o)
		return 0;
	o += (size_t)n;
	if (ci->is_prober) {
		n = snprintf(out + o, cap - o, ",\"IsProber\":true");
		if (n < 0 || (size_t)n >= cap - o)
			return 0;
		o += (size_t)n;
	}
	if (ci->app_name[0]) {
		if (!derp_json_quote(app, sizeof(app), ci->app_name))
			return 0;
		n = snprintf(out + o, cap - o, ",\"AppName\":%s", app);
		if (n < 0 || (size_t)n >= cap - o)
			return 0;
		o += (size_t)n;
	}
	n = snprintf(out + o, cap - o, "}");
	if (n < 0 || (size_t)n >= cap - o)
		return 0;
	return o + (size_t)n;
}

int derp_client_info_parse(const char *json, size_t len, struct derp_client_info *ci)
{
	memset(ci, 0, sizeof(*ci));
	int rc = derp_json_object(json, len, ci_member, ci);
	if (rc) {
		sodium_memzero(ci->mesh_key, sizeof(ci->mesh_key));
		ci->has_mesh_key = false;
		return -EINVAL;
	}
	return 0;
}

static int si_member(void *arg, const char *key, enum derp_json_type t, const char *v, size_t n)
{
	struct derp_server_info *si = arg;
	if (!strcasecmp(key, "version")) {
		int64_t x = si->version;
		if (json_i64(t, v, n, &x) < 0 || x < INT32_MIN || x > INT32_MAX)
			return -EINVAL;
		si->version = (int)x;
		return 0;
	}
	if (!strcasecmp(key, "TokenBucketBytesPerSecond"))
		return json_i64(t, v, n, &si->token_bucket_bytes_per_second);
	if (!strcasecmp(key, "TokenBucketBytesBurst"))
		return json_i64(t, v, n, &si->token_bucket_bytes_burst);
	return 0;
}

size_t derp_server_info_json(char *out, size_t cap, const struct derp_server_info *si)
{
	int n;
	if (si->token_bucket_bytes_per_second || si->token_bucket_bytes_burst)
		n = snprintf(out, cap,
			     "{\"version\":%d,\"TokenBucketBytesPerSecond\":%lld,\"TokenBucketBytesBurst\":%lld}",
			     si->version, (long long)si->token_bucket_bytes_per_second,
			     (long long)si->token_bucket_bytes_burst);
	else
		n = snprintf(out, cap, "{\"version\":%d}", si->version);
	return n < 0 || (size_t)n >= cap ? 0 : (size_t)n;
}

int derp_server_info_parse(const char *json, size_t len, struct derp_server_info *si)
{
	memset(si, 0, sizeof(*si));
	return derp_json_object(json, len, si_member, si) ? -EINVAL : 0;
}

/* ---- whole handshake frames ---- */

int derp_enc_client_info(uint8_t *out, size_t cap, const uint8_t client_priv[DERP_KEY_LEN],
			 const uint8_t client_pub[DERP_KEY_LEN], const uint8_t server_pub[DERP_KEY_LEN],
			 const struct derp_client_info *ci)
{
	char json[512];
	size_t jn = derp_client_info_json(json, sizeof(json), ci);
	if (!jn)
		return -EINVAL;
	size_t total = DERP_HDR_LEN + DERP_KEY_LEN + DERP_BOX_OVERHEAD + jn;
	if (total > cap) {
		sodium_memzero(json, sizeof(json));
		return -ENOSPC;
	}
	derp_put_hdr(out, DERP_FRAME_CLIENT_INFO, (uint32_t)(total - DERP_HDR_LEN));
	memcpy(out + DERP_HDR_LEN, client_pub, DERP_KEY_LEN);
	int rc = derp_box_seal(out + DERP_HDR_LEN + DERP_KEY_LEN, (const uint8_t *)json, jn, server_pub, client_priv);
	sodium_memzero(json, sizeof(json)); /* may hold the mesh key */
	return rc < 0 ? rc : (int)total;
}

int derp_dec_client_info(const uint8_t *p, size_t len, const uint8_t server_priv[DERP_KEY_LEN],
			 uint8_t client_pub[DERP_KEY_LEN], struct derp_client_info *ci)
{
	memset(ci, 0, sizeof(*ci));
	if (len < DERP_CLIENTINFO_MIN || len > DERP_CLIENTINFO_MAX)
		return -EINVAL;
	if (derp_key_is_zero(p))
		return -EINVAL;
	size_t blen = len - DERP_KEY_LEN;
	/* The frame bound (derper's) admits a box shorter than its own
	 * overhead: refuse it before blen - DERP_BOX_OVERHEAD can wrap. */
	if (blen < DERP_BOX_OVERHEAD)
		return -EBADMSG;
	memcpy(client_pub, p, DERP_KEY_LEN);
	uint8_t stackbuf[1024];
	uint8_t *pt = blen - DERP_BOX_OVERHEAD <= sizeof(stackbuf) ? stackbuf : malloc(blen - DERP_BOX_OVERHEAD);
	if (!pt)
		return -ENOMEM;
	int n = derp_box_open(pt, p + DERP_KEY_LEN, blen, client_pub, server_priv);
	int rc = n < 0 ? -EBADMSG : derp_client_info_parse((const char *)pt, (size_t)n, ci);
	sodium_memzero(pt, blen - DERP_BOX_OVERHEAD);
	if (pt != stackbuf)
		free(pt);
	return rc < 0 ? -EBADMSG : 0;
}

int derp_enc_server_info(uint8_t *out, size_t cap, const uint8_t server_priv[DERP_KEY_LEN],
			 const uint8_t client_pub[DERP_KEY_LEN], const struct derp_server_info *si)
{
	char json[256];
	size_t jn = derp_server_info_json(json, sizeof(json), si);
	if (!jn)
		return -EINVAL;
	size_t total = DERP_HDR_LEN + DERP_BOX_OVERHEAD + jn;
	if (total > cap)
		return -ENOSPC;
	derp_put_hdr(out, DERP_FRAME_SERVER_INFO, (uint32_t)(total - DERP_HDR_LEN));
	int rc = derp_box_seal(out + DERP_HDR_LEN, (const uint8_t *)json, jn, client_pub, server_priv);
	return rc < 0 ? rc : (int)total;
}

int derp_dec_server_info(const uint8_t *p, size_t len, const uint8_t client_priv[DERP_KEY_LEN],
			 const uint8_t server_pub[DERP_KEY_LEN], struct derp_server_info *si)
{
	memset(si, 0, sizeof(*si));
	if (len < DERP_NONCE_LEN || len > DERP_NONCE_LEN + DERP_MAX_INFO_LEN || len < DERP_BOX_OVERHEAD)
		return -EBADMSG;
	uint8_t *pt = malloc(len - DERP_BOX_OVERHEAD + 1);
	if (!pt)
		return -ENOMEM;
	int n = derp_box_open(pt, p, len, server_pub, client_priv);
	int rc = n < 0 ? -EBADMSG : derp_server_info_parse((const char *)pt, (size_t)n, si);
	free(pt);
	return rc < 0 ? -EBADMSG : 0;
}
