/* The DERP phase of an accepted connection: handshake and frame dispatch
 * (spec §9, §10, §13). */
#include "derp/server/server.h"
#include "derp/http.h"
#include "base/log.h"
#include "trace/trace.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define NOT_HERE_BURST 3

void derp_srv_upgrade(struct derp_conn *c, bool fast_start)
{
	struct derp_server *s = c->srv;
	char resp[256];
	size_t n = fast_start ? 0 : derp_http_101(resp, sizeof(resp), s->pub);
	struct derp_pkt *p = derp_pkt_new((uint32_t)(n + DERP_SERVER_KEY_FRAME_LEN));
	if (!p) {
		derp_conn_close(c, CR_HTTP);
		return;
	}
	memcpy(p->data, resp, n);
	derp_enc_server_key(p->data + n, DERP_SERVER_KEY_FRAME_LEN, s->pub);
	derp_conn_push_ctl(c, p);
	c->state = CS_CLIENT_INFO;
	derp_parser_init(&c->parser, DERP_ROLE_SERVER);
	s->st.upgrades++;
	derp_conn_deadline(c, &c->hs_at, derp_srv_now(s) + s->cfg.handshake_timeout_ms);
}

static void handle_client_info(struct derp_conn *c, const struct derp_frame *f)
{
	struct derp_server *s = c->srv;
	struct derp_client_info ci;
	uint8_t key[DERP_KEY_LEN];
	if (derp_dec_client_info(f->data, f->len, s->priv, key, &ci) < 0) {
		derp_conn_close(c, CR_HANDSHAKE);
		return;
	}
	c->mesh_ok = s->has_mesh_key && ci.has_mesh_key && sodium_memcmp(ci.mesh_key, s->mesh_key, DERP_KEY_LEN) == 0;
	sodium_memzero(ci.mesh_key, sizeof(ci.mesh_key));
	if (!c->mesh_ok && !derp_allowed(s, key)) {
		derp_conn_close(c, CR_NOT_ALLOWED); /* silently, no frame (spec §11) */
		return;
	}
	struct derp_server_info si = {.version = DERP_PROTOCOL_VERSION};
	uint8_t buf[DERP_HDR_LEN + DERP_BOX_OVERHEAD + 128];
	int n = derp_enc_server_info(buf, sizeof(buf), s->priv, key, &si);
	struct derp_pkt *p = n > 0 ? derp_pkt_new((uint32_t)n) : NULL;
	if (!p) {
		derp_conn_close(c, CR_HANDSHAKE);
		return;
	}
	memcpy(p->data, buf, (size_t)n);
	memcpy(c->key, key, DERP_KEY_LEN);
	c->prober = ci.is_prober;
	c->state = CS_ACTIVE;
	c->hs_at = 0;
	derp_parser_set_role(&c->parser, DERP_ROLE_SERVER_ACTIVE);
	uint64_t now = derp_srv_now(s);
	c->tokens = (int64_t)s->cfg.rate_burst_bytes;
	c->tokens_at = now;
	c->nothere_tokens = NOT_HERE_BURST;
	c->nothere_at = now;
	derp_conn_push_ctl(c, p);
	derp_peer_register(c);
	if (c->closing)
		return;
	uint32_t jitter = s->cfg.keepalive_jitter_ms ? randombytes_uniform(s->cfg.keepalive_jitter_ms) : 0;
	c->ka_period = (uint64_t)s->cfg.keepalive_ms + jitter;
	c->ka_at = now + c->ka_period;
	derp_conn_arm_timer(c);
}

/* Receive rate limit by backpressure: charge the frame, pause reading when
 * the bucket is empty until it has refilled. Mesh peers are exempt. */
static void rate_charge(struct derp_conn *c, uint32_t len)
{
	struct derp_server *s = c->srv;
	uint64_t rate = s->cfg.rate_bytes_per_s;
	if (!rate || c->mesh_ok)
		return;
	uint64_t now = derp_srv_now(s);
	int64_t burst = (int64_t)s->cfg.rate_burst_bytes;
	int64_t add = (int64_t)((now - c->tokens_at) * rate / 1000);
	if (add > 0) {
		c->tokens = c->tokens + add > burst ? burst : c->tokens + add;
		c->tokens_at = now;
	}
	c->tokens -= len < DERP_SRV_RATE_FRAME_MAX ? len : DERP_SRV_RATE_FRAME_MAX;
	if (c->tokens >= 0)
		return;
	uint64_t wait = ((uint64_t)(-c->tokens) * 1000 + rate - 1) / rate;
	c->paused = true;
	s->st.rate_limit_waits++;
	derp_conn_update_events(c);
	derp_conn_deadline(c, &c->resume_at, now + (wait ? wait : 1));
}

static void maybe_not_here(struct derp_conn *c, const uint8_t dst[DERP_KEY_LEN])
{
	struct derp_server *s = c->srv;
	uint64_t now = derp_srv_now(s), iv = s->cfg.not_here_interval_ms;
	if (c->nothere_tokens < NOT_HERE_BURST && now - c->nothere_at >= iv) {
		uint64_t add = (now - c->nothere_at) / iv;
		c->nothere_tokens = (uint8_t)(c->nothere_tokens + add > NOT_HERE_BURST ? NOT_HERE_BURST
										       : c->nothere_tokens + add);
		c->nothere_at += add * iv;
	}
	if (c->nothere_tokens == NOT_HERE_BURST)
		c->nothere_at = now;
	if (!c->nothere_tokens)
		return;
	c->nothere_tokens--;
	derp_send_peer_gone(c, dst, DERP_PEER_GONE_NOT_HERE);
}

static void enqueue_packet(struct derp_conn *dc, const uint8_t src[DERP_KEY_LEN], const uint8_t *data, size_t len,
			   bool disco)
{
	struct derp_server *s = dc->srv;
	if (dc->closing) {
		TR_TAP(drop, TR_HOP_DS, TR_OBJ(s), dc->key, TR_R_DS_GONE, data, len);
		s->st.drop_gone_disconnected++;
		return;
	}
	struct derp_pktq *q = disco ? &dc->discoq : &dc->dataq;
	/* A full queue may only mean this batch has not been flushed yet: write
	 * it out first, so only a receiver whose socket is full loses packets. */
	if (q->n >= s->cfg.queue_depth && !dc->out_blocked) {
		derp_conn_flush(dc);
		if (dc->closing) {
			TR_TAP(drop, TR_HOP_DS, TR_OBJ(s), dc->key, TR_R_DS_GONE, data, len);
			s->st.drop_gone_disconnected++;
			return;
		}
	}
	/* Drop-oldest: a slow receiver never blocks the sender. */
	if (q->n >= s->cfg.queue_depth) {
		struct derp_pkt *old = derp_pktq_pop(q);
		TR_TAP(drop, TR_HOP_DS, TR_OBJ(s), dc->key, TR_R_DS_QUEUE_HEAD, old->data + DERP_HDR_LEN + DERP_KEY_LEN,
		       old->len - DERP_HDR_LEN - DERP_KEY_LEN);
		derp_pkt_free(old);
		s->st.drop_queue_head++;
	}
	struct derp_pkt *p = derp_pkt_new((uint32_t)DERP_RECV_FRAME_LEN(len));
	if (!p) {
		TR_TAP(drop, TR_HOP_DS, TR_OBJ(s), dc->key, TR_R_DS_NO_MEMORY, data, len);
		s->st.drop_queue_tail++;
		return;
	}
	derp_enc_recv_packet(p->data, p->len, src, data, len);
	TR_TAP(frame, TR_HOP_DS_RELAY, TR_OBJ(s), dc->key, p->data, p->len);
	derp_pktq_push(q, p);
	derp_conn_mark_dirty(dc);
}

/* Delivers a packet from src to dst: a local client, else (unless it came
 * from the mesh: one hop only) a mesh peer that reported dst. */
static void deliver(struct derp_conn *from, const uint8_t src[DERP_KEY_LEN], const uint8_t dst[DERP_KEY_LEN],
		    const uint8_t *data, size_t len, bool forwarded)
{
	struct derp_server *s = from->srv;
	bool disco = derp_looks_like_disco(data, len);
	if (disco)
		s->st.disco_packets++;
	struct derp_peer *p = derp_peer_find(s, dst);
	if (p && p->nconns) {
		if (!p->active) {
			TR_TAP(drop, TR_HOP_DS, TR_OBJ(s), dst, TR_R_DS_DUP_CLIENT, data, len);
			s->st.drop_dup_client++;
			return;
		}
		enqueue_packet(p->active, src, data, len, disco);
		derp_peer_note_sent(s, src, dst);
		return;
	}
	if (!forwarded && p && p->nroutes) {
		if (derp_mesh_forward(p->routes[0], src, dst, data, len))
			s->st.packets_forwarded_out++;
		return;
	}
	TR_TAP(drop, TR_HOP_DS, TR_OBJ(s), dst, forwarded ? TR_R_DS_UNKNOWN_DEST_FWD : TR_R_DS_UNKNOWN_DEST, data, len);
	if (forwarded)
		s->st.drop_unknown_dest_on_fwd++;
	else
		s->st.drop_unknown_dest++;
	if (disco)
		maybe_not_here(from, dst);
}

static void handle_close_peer(struct derp_conn *c, const uint8_t target[DERP_KEY_LEN])
{
	struct derp_peer *p = derp_peer_find(c->srv, target);
	if (!p || !p->nconns) {
		spz_log(SPZ_LOG_DEBUG, "derp", "ClosePeer for an unknown key");
		return;
	}
	/* Closing unregisters and may free p: walk a snapshot. */
	uint32_t n = p->nconns;
	struct derp_conn **v = malloc(n * sizeof(*v));
	if (!v)
		return;
	uint32_t i = 0;
	for (struct derp_conn *k = p->conns; k && i < n; k = k->key_next)
		v[i++] = k;
	for (uint32_t j = 0; j < i; j++)
		derp_conn_close(v[j], CR_CLOSE_PEER);
	free(v);
}

static void on_frame(struct derp_conn *c, const struct derp_frame *f)
{
	struct derp_server *s = c->srv;
	struct derp_pkt_view v;
	if (c->state == CS_CLIENT_INFO) {
		handle_client_info(c, f); /* the parser lets nothing else through */
		return;
	}
	rate_charge(c, f->len);
	derp_peer_note_activity(c);
	if (f->skipped)
		return; /* unknown types, Pong, a second ClientInfo... */
	TR_TAP(derp, TR_HOP_DS_IN, TR_OBJ(s), c->key, f->type, NULL, f->data, f->len);
	switch (f->type) {
	case DERP_FRAME_SEND_PACKET:
		derp_dec_send_packet(f->data, f->len, &v);
		s->st.packets_recv++;
		s->st.bytes_recv += v.len;
		deliver(c, c->key, v.key, v.data, v.len, false);
		break;
	case DERP_FRAME_FORWARD_PACKET:
		if (!c->mesh_ok) {
			derp_conn_close(c, CR_PERMISSION);
			return;
		}
		derp_dec_forward_packet(f->data, f->len, &v);
		s->st.packets_recv++;
		s->st.packets_forwarded_in++;
		s->st.bytes_recv += v.len;
		deliver(c, v.key, v.dst, v.data, v.len, true);
		break;
	case DERP_FRAME_NOTE_PREFERRED: {
		bool pref = f->data[0] != 0;
		if (pref != c->preferred) {
			c->preferred = pref;
			if (pref)
				s->st.home_clients++;
			else
				s->st.home_clients--;
		}
		break;
	}
	case DERP_FRAME_WATCH_CONNS:
		if (!c->mesh_ok) {
			derp_conn_close(c, CR_PERMISSION);
			return;
		}
		/* Our own key watching us is a mesh self-connect: ignored. */
		if (!c->watcher && memcmp(c->key, s->pub, DERP_KEY_LEN) != 0)
			derp_watch_add(c);
		break;
	case DERP_FRAME_CLOSE_PEER:
		if (!c->mesh_ok) {
			derp_conn_close(c, CR_PERMISSION);
			return;
		}
		handle_close_peer(c, f->data);
		break;
	case DERP_FRAME_PING:
		s->st.pings++;
		/* One pong slot: pings arriving while one is pending are ignored. */
		if (!c->pong_pending) {
			c->pong_pending = true;
			memcpy(c->pong, f->data, DERP_PING_LEN);
			derp_conn_mark_dirty(c);
		}
		break;
	default: break;
	}
}

size_t derp_srv_on_stream(struct derp_conn *c, const uint8_t *b, size_t n)
{
	size_t off = 0;
	while (off < n && !c->closing && !c->paused) {
		struct derp_frame f;
		size_t used = 0;
		int rc = derp_parser_feed(&c->parser, b + off, n - off, &used, &f);
		off += used;
		if (rc < 0) {
			derp_conn_close(c, c->state == CS_CLIENT_INFO ? CR_HANDSHAKE : CR_PROTOCOL);
			return n;
		}
		if (rc == 0)
			break;
		on_frame(c, &f);
	}
	return c->closing ? n : off;
}
