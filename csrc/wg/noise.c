/* Noise IKpsk2 handshake (spec section 3) and keypair management (section 6). */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "wg/wg_internal.h"

static const char CONSTRUCTION[] = "Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s";
static const char IDENTIFIER[] = "WireGuard v1 zx2c4 Jason@zx2c4.com";

static uint8_t C0[NOISE_HASH_LEN], H0[NOISE_HASH_LEN];
static pthread_once_t consts_once = PTHREAD_ONCE_INIT;

static void consts_init(void)
{
	spz_hash(C0, CONSTRUCTION, sizeof(CONSTRUCTION) - 1, NULL, 0, NULL, 0);
	spz_hash(H0, C0, NOISE_HASH_LEN, IDENTIFIER, sizeof(IDENTIFIER) - 1, NULL, 0);
}

static void mix_hash(uint8_t h[NOISE_HASH_LEN], const void *x, size_t len)
{
	spz_hash(h, h, NOISE_HASH_LEN, x, len, NULL, 0);
}

static void mix_key(uint8_t c[NOISE_HASH_LEN], const void *x, size_t len) { spz_kdf(c, NULL, NULL, c, x, len); }

/* (C, k) = KDF2(C, DH(priv, pub)); false for a low-order result. */
static bool mix_dh(uint8_t c[NOISE_HASH_LEN], uint8_t k[NOISE_SYMMETRIC_KEY_LEN],
		   const uint8_t priv[NOISE_PUBLIC_KEY_LEN], const uint8_t pub[NOISE_PUBLIC_KEY_LEN])
{
	uint8_t dh[NOISE_PUBLIC_KEY_LEN];
	if (!spz_x25519(dh, priv, pub))
		return false;
	spz_kdf(c, k, NULL, c, dh, NOISE_PUBLIC_KEY_LEN);
	spz_wipe(dh, sizeof(dh));
	return true;
}

/* (C, k) = KDF2(C, precomputed) */
static void mix_precomputed(uint8_t c[NOISE_HASH_LEN], uint8_t k[NOISE_SYMMETRIC_KEY_LEN],
			    const uint8_t dh[NOISE_PUBLIC_KEY_LEN])
{
	spz_kdf(c, k, NULL, c, dh, NOISE_PUBLIC_KEY_LEN);
}

/* C = KDF1(C, DH(priv, pub)) */
static bool mix_dh1(uint8_t c[NOISE_HASH_LEN], const uint8_t priv[NOISE_PUBLIC_KEY_LEN],
		    const uint8_t pub[NOISE_PUBLIC_KEY_LEN])
{
	uint8_t dh[NOISE_PUBLIC_KEY_LEN];
	if (!spz_x25519(dh, priv, pub))
		return false;
	mix_key(c, dh, NOISE_PUBLIC_KEY_LEN);
	spz_wipe(dh, sizeof(dh));
	return true;
}

static void mix_psk(uint8_t c[NOISE_HASH_LEN], uint8_t h[NOISE_HASH_LEN], uint8_t k[NOISE_SYMMETRIC_KEY_LEN],
		    const uint8_t psk[NOISE_SYMMETRIC_KEY_LEN])
{
	uint8_t tau[NOISE_SYMMETRIC_KEY_LEN];
	spz_kdf(c, tau, k, c, psk, NOISE_SYMMETRIC_KEY_LEN);
	mix_hash(h, tau, NOISE_SYMMETRIC_KEY_LEN);
	spz_wipe(tau, sizeof(tau));
}

static void generate_ephemeral(wg_device *dev, uint8_t priv[NOISE_PUBLIC_KEY_LEN], uint8_t pub[NOISE_PUBLIC_KEY_LEN])
{
	wg_dev_random(dev, priv, NOISE_PUBLIC_KEY_LEN);
	spz_x25519_clamp(priv);
	spz_x25519_public(pub, priv);
}

static void hs_zero(struct wg_handshake *hs)
{
	spz_wipe(hs->hash, NOISE_HASH_LEN);
	spz_wipe(hs->chaining_key, NOISE_HASH_LEN);
	spz_wipe(hs->ephemeral_private, NOISE_PUBLIC_KEY_LEN);
	memset(hs->remote_ephemeral, 0, NOISE_PUBLIC_KEY_LEN);
	hs->remote_index = 0;
	hs->state = WG_HS_ZEROED;
}

static void hs_unregister(wg_device *dev, struct wg_handshake *hs)
{
	if (hs->index_registered)
		wg_index_del(&dev->index, hs->local_index);
	hs->index_registered = false;
}

static int hs_register(wg_device *dev, wg_peer *peer)
{
	hs_unregister(dev, &peer->hs);
	int rc = wg_index_add(dev, WG_INDEX_HANDSHAKE, peer, NULL, &peer->hs.local_index);
	peer->hs.index_registered = rc == 0;
	return rc;
}

static void report_keys(wg_device *dev, wg_peer *peer)
{
	if (!dev->ops.handshake_keys)
		return;
	struct wg_handshake_keys k;
	memcpy(k.local_static_private, dev->priv, NOISE_PUBLIC_KEY_LEN);
	memcpy(k.remote_static_public, peer->pub, NOISE_PUBLIC_KEY_LEN);
	memcpy(k.local_ephemeral_private, peer->hs.ephemeral_private, NOISE_PUBLIC_KEY_LEN);
	memcpy(k.preshared_key, peer->hs.psk, NOISE_SYMMETRIC_KEY_LEN);
	dev->ops.handshake_keys(dev->ops.ctx, peer, &k);
	spz_wipe(&k, sizeof(k));
}

/* The end of creating a handshake message (initiation or response): a
 * sender index, the new state, the keys for the key log; k (the last
 * AEAD key) is wiped either way, and on failure the handshake too. */
static int hs_created(wg_device *dev, wg_peer *peer, uint8_t *sender, enum wg_hs_state state,
		      uint8_t k[NOISE_SYMMETRIC_KEY_LEN])
{
	struct wg_handshake *hs = &peer->hs;
	int rc = hs_register(dev, peer);
	if (rc == 0) {
		wg_put_le32(sender, hs->local_index);
		hs->state = state;
		report_keys(dev, peer);
	}
	spz_wipe(k, NOISE_SYMMETRIC_KEY_LEN);
	if (rc != 0) {
		hs_zero(hs);
		return -EINVAL;
	}
	return 0;
}

void wg_noise_precompute(wg_device *dev, wg_peer *peer)
{
	pthread_once(&consts_once, consts_init);
	peer->hs.ss_valid = dev->has_key && spz_x25519(peer->hs.precomputed_ss, dev->priv, peer->pub);
	if (!peer->hs.ss_valid)
		spz_wipe(peer->hs.precomputed_ss, NOISE_PUBLIC_KEY_LEN);
}

int wg_noise_create_initiation(wg_device *dev, wg_peer *peer, uint8_t msg[WG_INITIATION_LEN])
{
	struct wg_handshake *hs = &peer->hs;
	uint8_t k[NOISE_SYMMETRIC_KEY_LEN], ts[NOISE_TIMESTAMP_LEN];
	if (!dev->has_key || !hs->ss_valid)
		return -ENOKEY;
	memset(msg, 0, WG_INITIATION_LEN);
	msg[0] = WG_MSG_INITIATION;

	memcpy(hs->chaining_key, C0, NOISE_HASH_LEN);
	memcpy(hs->hash, H0, NOISE_HASH_LEN);
	mix_hash(hs->hash, peer->pub, NOISE_PUBLIC_KEY_LEN);

	/* e */
	uint8_t *eph = msg + WG_INIT_EPHEMERAL;
	generate_ephemeral(dev, hs->ephemeral_private, eph);
	mix_key(hs->chaining_key, eph, NOISE_PUBLIC_KEY_LEN);
	mix_hash(hs->hash, eph, NOISE_PUBLIC_KEY_LEN);
	/* es */
	if (!mix_dh(hs->chaining_key, k, hs->ephemeral_private, peer->pub))
		goto fail;
	/* s */
	spz_aead_encrypt(msg + WG_INIT_STATIC, dev->pub, NOISE_PUBLIC_KEY_LEN, hs->hash, NOISE_HASH_LEN, 0, k);
	mix_hash(hs->hash, msg + WG_INIT_STATIC, NOISE_ENCRYPTED_LEN(NOISE_PUBLIC_KEY_LEN));
	/* ss */
	mix_precomputed(hs->chaining_key, k, hs->precomputed_ss);
	/* {t} */
	spz_tai64n(ts, wg_dev_wall_ns(dev), !(dev->flags & WG_FLAG_NO_WHITENING));
	spz_aead_encrypt(msg + WG_INIT_TIMESTAMP, ts, NOISE_TIMESTAMP_LEN, hs->hash, NOISE_HASH_LEN, 0, k);
	mix_hash(hs->hash, msg + WG_INIT_TIMESTAMP, NOISE_ENCRYPTED_LEN(NOISE_TIMESTAMP_LEN));

	return hs_created(dev, peer, msg + WG_INIT_SENDER, WG_HS_INITIATION_CREATED, k);
fail:
	spz_wipe(k, sizeof(k));
	hs_zero(hs);
	return -EINVAL;
}

/* A message consumed: the handshake keeps the remote ephemeral, the running
 * hash and chaining key, and the sender's index for the next step. */
static void hs_consumed(struct wg_handshake *hs, const uint8_t *e, const uint8_t h[NOISE_HASH_LEN],
			const uint8_t c[NOISE_HASH_LEN], const uint8_t *sender, enum wg_hs_state state)
{
	memcpy(hs->remote_ephemeral, e, NOISE_PUBLIC_KEY_LEN);
	memcpy(hs->hash, h, NOISE_HASH_LEN);
	memcpy(hs->chaining_key, c, NOISE_HASH_LEN);
	hs->remote_index = wg_le32(sender);
	hs->state = state;
}

/* Wipes a consume step's copies of the chaining key, hash and key. */
static void wipe_step(uint8_t c[NOISE_HASH_LEN], uint8_t h[NOISE_HASH_LEN], uint8_t k[NOISE_SYMMETRIC_KEY_LEN])
{
	spz_wipe(c, NOISE_HASH_LEN);
	spz_wipe(h, NOISE_HASH_LEN);
	spz_wipe(k, NOISE_SYMMETRIC_KEY_LEN);
}

int wg_noise_consume_initiation(wg_device *dev, uint64_t now_ms, const uint8_t *msg, wg_peer **out)
{
	uint8_t c[NOISE_HASH_LEN], h[NOISE_HASH_LEN], k[NOISE_SYMMETRIC_KEY_LEN], s[NOISE_PUBLIC_KEY_LEN],
		ts[NOISE_TIMESTAMP_LEN];
	const uint8_t *e = msg + WG_INIT_EPHEMERAL;
	int reason = WG_DROP_HANDSHAKE_DECRYPT;
	wg_peer *peer = NULL;
	pthread_once(&consts_once, consts_init);

	memcpy(c, C0, NOISE_HASH_LEN);
	memcpy(h, H0, NOISE_HASH_LEN);
	mix_hash(h, dev->pub, NOISE_PUBLIC_KEY_LEN);
	/* e */
	mix_key(c, e, NOISE_PUBLIC_KEY_LEN);
	mix_hash(h, e, NOISE_PUBLIC_KEY_LEN);
	/* es */
	if (!mix_dh(c, k, dev->priv, e))
		goto out;
	/* s */
	if (!spz_aead_decrypt(s, msg + WG_INIT_STATIC, NOISE_ENCRYPTED_LEN(NOISE_PUBLIC_KEY_LEN), h, NOISE_HASH_LEN, 0,
			      k))
		goto out;
	mix_hash(h, msg + WG_INIT_STATIC, NOISE_ENCRYPTED_LEN(NOISE_PUBLIC_KEY_LEN));
	peer = wg_peer_lookup(dev, s);
	if (!peer) {
		reason = WG_DROP_UNKNOWN_PEER;
		goto out;
	}
	struct wg_handshake *hs = &peer->hs;
	if (!hs->ss_valid)
		goto out;
	/* ss */
	mix_precomputed(c, k, hs->precomputed_ss);
	/* {t} */
	if (!spz_aead_decrypt(ts, msg + WG_INIT_TIMESTAMP, NOISE_ENCRYPTED_LEN(NOISE_TIMESTAMP_LEN), h, NOISE_HASH_LEN,
			      0, k))
		goto out;
	mix_hash(h, msg + WG_INIT_TIMESTAMP, NOISE_ENCRYPTED_LEN(NOISE_TIMESTAMP_LEN));

	/* Replay: the timestamp must grow. Flood: at most one per 20 ms. */
	if (memcmp(ts, hs->latest_timestamp, NOISE_TIMESTAMP_LEN) <= 0) {
		reason = WG_DROP_STALE_TIMESTAMP;
		goto out;
	}
	if (hs->have_initiation && now_ms < hs->last_initiation_ms + WG_INITIATION_MIN_INTERVAL) {
		reason = WG_DROP_INITIATION_FLOOD;
		goto out;
	}

	memcpy(hs->latest_timestamp, ts, NOISE_TIMESTAMP_LEN);
	hs->last_initiation_ms = now_ms;
	hs->have_initiation = true;
	hs_consumed(hs, e, h, c, msg + WG_INIT_SENDER, WG_HS_INITIATION_CONSUMED);
	*out = peer;
	reason = 0;
out:
	wipe_step(c, h, k);
	return reason;
}

int wg_noise_create_response(wg_device *dev, wg_peer *peer, uint8_t msg[WG_RESPONSE_LEN])
{
	struct wg_handshake *hs = &peer->hs;
	uint8_t k[NOISE_SYMMETRIC_KEY_LEN];
	if (hs->state != WG_HS_INITIATION_CONSUMED)
		return -EINVAL;
	memset(msg, 0, WG_RESPONSE_LEN);
	msg[0] = WG_MSG_RESPONSE;
	wg_put_le32(msg + WG_RESP_RECEIVER, hs->remote_index);

	/* e */
	uint8_t *eph = msg + WG_RESP_EPHEMERAL;
	generate_ephemeral(dev, hs->ephemeral_private, eph);
	mix_key(hs->chaining_key, eph, NOISE_PUBLIC_KEY_LEN);
	mix_hash(hs->hash, eph, NOISE_PUBLIC_KEY_LEN);
	/* ee, se */
	if (!mix_dh1(hs->chaining_key, hs->ephemeral_private, hs->remote_ephemeral) ||
	    !mix_dh1(hs->chaining_key, hs->ephemeral_private, peer->pub))
		goto fail;
	/* psk */
	mix_psk(hs->chaining_key, hs->hash, k, hs->psk);
	/* {} */
	spz_aead_encrypt(msg + WG_RESP_EMPTY, NULL, 0, hs->hash, NOISE_HASH_LEN, 0, k);
	mix_hash(hs->hash, msg + WG_RESP_EMPTY, NOISE_ENCRYPTED_LEN(0));

	return hs_created(dev, peer, msg + WG_RESP_SENDER, WG_HS_RESPONSE_CREATED, k);
fail:
	spz_wipe(k, sizeof(k));
	hs_zero(hs);
	return -EINVAL;
}

int wg_noise_consume_response(wg_device *dev, const uint8_t *msg, wg_peer **out)
{
	struct wg_index_entry *ent = wg_index_find(&dev->index, wg_le32(msg + WG_RESP_RECEIVER));
	if (!ent || ent->kind != WG_INDEX_HANDSHAKE || ent->peer->hs.state != WG_HS_INITIATION_CREATED)
		return WG_DROP_UNKNOWN_INDEX;
	wg_peer *peer = ent->peer;
	struct wg_handshake *hs = &peer->hs;
	uint8_t c[NOISE_HASH_LEN], h[NOISE_HASH_LEN], k[NOISE_SYMMETRIC_KEY_LEN];
	const uint8_t *e = msg + WG_RESP_EPHEMERAL;
	int reason = WG_DROP_HANDSHAKE_DECRYPT;

	memcpy(c, hs->chaining_key, NOISE_HASH_LEN);
	memcpy(h, hs->hash, NOISE_HASH_LEN);
	/* e */
	mix_key(c, e, NOISE_PUBLIC_KEY_LEN);
	mix_hash(h, e, NOISE_PUBLIC_KEY_LEN);
	/* ee, se */
	if (!mix_dh1(c, hs->ephemeral_private, e) || !mix_dh1(c, dev->priv, e))
		goto out;
	/* psk */
	mix_psk(c, h, k, hs->psk);
	/* {} */
	if (!spz_aead_decrypt(NULL, msg + WG_RESP_EMPTY, NOISE_ENCRYPTED_LEN(0), h, NOISE_HASH_LEN, 0, k))
		goto out;
	mix_hash(h, msg + WG_RESP_EMPTY, NOISE_ENCRYPTED_LEN(0));

	hs_consumed(hs, e, h, c, msg + WG_RESP_SENDER, WG_HS_RESPONSE_CONSUMED);
	*out = peer;
	reason = 0;
out:
	wipe_step(c, h, k);
	return reason;
}

static void keypair_free(wg_device *dev, struct wg_keypair *kp)
{
	if (!kp)
		return;
	wg_index_del(&dev->index, kp->local_index);
	spz_aead_free(&kp->send);
	spz_aead_free(&kp->recv);
	spz_wipe(kp, sizeof(*kp));
	free(kp);
}

int wg_noise_begin_session(wg_device *dev, wg_peer *peer, uint64_t now_ms)
{
	struct wg_handshake *hs = &peer->hs;
	if (hs->state != WG_HS_RESPONSE_CREATED && hs->state != WG_HS_RESPONSE_CONSUMED)
		return -EINVAL;
	struct wg_keypair *kp = calloc(1, sizeof(*kp));
	if (!kp)
		return -ENOMEM;
	uint8_t t1[NOISE_SYMMETRIC_KEY_LEN], t2[NOISE_SYMMETRIC_KEY_LEN];
	spz_kdf(t1, t2, NULL, hs->chaining_key, NULL, 0);
	kp->initiator = hs->state == WG_HS_RESPONSE_CONSUMED;
	/* Initiator sends with T1, responder with T2. */
	int rc = spz_aead_init(&kp->send, kp->initiator ? t1 : t2);
	if (rc == 0)
		rc = spz_aead_init(&kp->recv, kp->initiator ? t2 : t1);
	spz_wipe(t1, NOISE_SYMMETRIC_KEY_LEN);
	spz_wipe(t2, NOISE_SYMMETRIC_KEY_LEN);
	if (rc != 0) {
		spz_aead_free(&kp->send);
		free(kp);
		return rc;
	}
	wg_replay_init(&kp->replay);
	kp->created_ms = now_ms;
	kp->remote_index = hs->remote_index;
	kp->send_valid = kp->recv_valid = true;
	kp->peer = peer;

	/* The keypair takes over the handshake's index. */
	kp->local_index = hs->local_index;
	struct wg_index_entry *ent = wg_index_find(&dev->index, hs->local_index);
	if (ent) {
		ent->kind = WG_INDEX_KEYPAIR;
		ent->kp = kp;
	}
	hs->index_registered = false;
	hs_zero(hs);

	if (kp->initiator) {
		if (peer->kp_next) {
			keypair_free(dev, peer->kp_prev);
			peer->kp_prev = peer->kp_next;
			peer->kp_next = NULL;
			keypair_free(dev, peer->kp_cur);
		} else {
			keypair_free(dev, peer->kp_prev);
			peer->kp_prev = peer->kp_cur;
		}
		peer->kp_cur = kp;
	} else {
		/* The responder waits for the first packet on it (confirmation). */
		keypair_free(dev, peer->kp_next);
		peer->kp_next = kp;
		keypair_free(dev, peer->kp_prev);
		peer->kp_prev = NULL;
	}
	return 0;
}

bool wg_noise_received_with_keypair(wg_device *dev, wg_peer *peer, struct wg_keypair *kp)
{
	if (kp != peer->kp_next)
		return false;
	keypair_free(dev, peer->kp_prev);
	peer->kp_prev = peer->kp_cur;
	peer->kp_cur = peer->kp_next;
	peer->kp_next = NULL;
	return true;
}

void wg_noise_handshake_clear(wg_device *dev, wg_peer *peer)
{
	hs_unregister(dev, &peer->hs);
	hs_zero(&peer->hs);
}

void wg_noise_keypairs_clear(wg_device *dev, wg_peer *peer)
{
	keypair_free(dev, peer->kp_prev);
	keypair_free(dev, peer->kp_cur);
	keypair_free(dev, peer->kp_next);
	peer->kp_prev = peer->kp_cur = peer->kp_next = NULL;
}

void wg_noise_expire_keypairs(wg_device *dev, wg_peer *peer)
{
	wg_noise_handshake_clear(dev, peer);
	if (peer->kp_cur)
		peer->kp_cur->send_valid = false;
	if (peer->kp_next)
		peer->kp_next->send_valid = false;
}
