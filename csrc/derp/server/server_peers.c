/* Node keys on a server: local connections (with the duplicate policy),
 * mesh routes, who-sent-to-whom for PeerGone, and mesh watchers. */
#include "derp/server/server.h"
#include "base/log.h"
#include "base/list.h"

#include <stdlib.h>
#include <string.h>

/* Public keys are uniformly random: their first bytes make a fine hash. */
static size_t key_hash(const uint8_t *k)
{
	uint64_t h;
	memcpy(&h, k, sizeof(h));
	return (size_t)(h ^ (h >> 31));
}

struct derp_peer *derp_peer_find(struct derp_server *s, const uint8_t key[DERP_KEY_LEN])
{
	if (!s->ptab_cap)
		return NULL;
	for (struct derp_peer *p = s->ptab[key_hash(key) & (s->ptab_cap - 1)]; p; p = p->hnext)
		if (memcmp(p->key, key, DERP_KEY_LEN) == 0)
			return p;
	return NULL;
}

static bool ptab_grow(struct derp_server *s)
{
	size_t cap = s->ptab_cap ? s->ptab_cap * 2 : 256;
	struct derp_peer **t = calloc(cap, sizeof(*t));
	if (!t)
		return false;
	for (size_t i = 0; i < s->ptab_cap; i++) {
		struct derp_peer *p = s->ptab[i], *next;
		for (; p; p = next) {
			next = p->hnext;
			size_t b = key_hash(p->key) & (cap - 1);
			p->hnext = t[b];
			t[b] = p;
		}
	}
	free(s->ptab);
	s->ptab = t;
	s->ptab_cap = cap;
	return true;
}

struct derp_peer *derp_peer_get(struct derp_server *s, const uint8_t key[DERP_KEY_LEN])
{
	struct derp_peer *p = derp_peer_find(s, key);
	if (p)
		return p;
	if (s->npeers >= s->ptab_cap && !ptab_grow(s))
		return NULL;
	p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	memcpy(p->key, key, DERP_KEY_LEN);
	size_t b = key_hash(key) & (s->ptab_cap - 1);
	p->hnext = s->ptab[b];
	s->ptab[b] = p;
	s->npeers++;
	return p;
}

void derp_peer_maybe_free(struct derp_server *s, struct derp_peer *p)
{
	if (p->nconns || p->nroutes || p->nsent)
		return;
	struct derp_peer **pp = &s->ptab[key_hash(p->key) & (s->ptab_cap - 1)];
	while (*pp && *pp != p)
		pp = &(*pp)->hnext;
	if (*pp)
		*pp = p->hnext;
	s->npeers--;
	free(p->routes);
	free(p->sent_to);
	free(p);
}

bool derp_allowed(struct derp_server *s, const uint8_t key[DERP_KEY_LEN])
{
	if (!s->has_allowlist)
		return true;
	size_t lo = 0, hi = s->nallow;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = memcmp(s->allow[mid], key, DERP_KEY_LEN);
		if (!c)
			return true;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return false;
}

/* ---- control frames ---- */

static void push_watch(struct derp_conn *w, struct derp_pkt *p)
{
	if (w->ctlq.n >= DERP_SRV_WATCH_CTL_MAX) {
		/* A watcher this far behind resyncs by reconnecting (it gets a
		 * full PeerPresent flood then). */
		derp_pkt_free(p);
		derp_conn_close(w, CR_OVERFLOW);
		return;
	}
	derp_conn_push_ctl(w, p);
}

void derp_send_peer_gone(struct derp_conn *c, const uint8_t peer[DERP_KEY_LEN], uint8_t reason)
{
	if (c->closing)
		return;
	if (!c->watcher && c->ctlq.n >= DERP_SRV_CTL_MAX)
		return; /* a client that does not read: notices are advisory */
	struct derp_pkt *p = derp_pkt_new(DERP_PEER_GONE_FRAME_LEN);
	if (!p)
		return;
	derp_enc_peer_gone(p->data, p->len, peer, reason);
	if (reason == DERP_PEER_GONE_NOT_HERE)
		c->srv->st.peer_gone_not_here_sent++;
	else
		c->srv->st.peer_gone_disconnected_sent++;
	if (c->watcher)
		push_watch(c, p);
	else
		derp_conn_push_ctl(c, p);
}

static uint8_t present_flags(const struct derp_conn *c)
{
	uint8_t f = 0;
	if (c->mesh_ok)
		f |= DERP_PEER_PRESENT_IS_MESH_PEER;
	if (c->prober)
		f |= DERP_PEER_PRESENT_IS_PROBER;
	if (c->not_ideal)
		f |= DERP_PEER_PRESENT_NOT_IDEAL;
	return f ? f : DERP_PEER_PRESENT_IS_REGULAR;
}

static void send_peer_present(struct derp_conn *w, const struct derp_conn *c)
{
	struct derp_pkt *p = derp_pkt_new(DERP_PEER_PRESENT_FRAME_LEN);
	if (!p)
		return;
	derp_enc_peer_present(p->data, p->len, c->key, c->ip16, c->port, present_flags(c));
	w->srv->st.peer_present_sent++;
	push_watch(w, p);
}

/* ---- watchers ---- */

void derp_watch_add(struct derp_conn *c)
{
	struct derp_server *s = c->srv;
	c->watcher = true;
	c->watch_next = s->watchers;
	c->watch_prev = NULL;
	if (s->watchers)
		s->watchers->watch_prev = c;
	s->watchers = c;
	s->st.watchers++;
	/* First the current state: every key with a local connection. */
	for (size_t i = 0; i < s->ptab_cap && !c->closing; i++)
		for (struct derp_peer *p = s->ptab[i]; p && !c->closing; p = p->hnext)
			if (p->nconns && p->active)
				send_peer_present(c, p->active);
}

void derp_watch_del(struct derp_conn *c)
{
	struct derp_server *s = c->srv;
	if (!c->watcher)
		return;
	SPZ_DLIST_UNLINK(s->watchers, c, watch_prev, watch_next);
	c->watcher = false;
	s->st.watchers--;
}

static void broadcast_present(struct derp_server *s, const struct derp_conn *c)
{
	struct derp_conn *w, *next;
	for (w = s->watchers; w; w = next) {
		next = w->watch_next;
		if (w != c)
			send_peer_present(w, c);
	}
}

static void broadcast_gone(struct derp_server *s, const uint8_t key[DERP_KEY_LEN])
{
	struct derp_conn *w, *next;
	for (w = s->watchers; w; w = next) {
		next = w->watch_next;
		derp_send_peer_gone(w, key, DERP_PEER_GONE_DISCONNECTED);
	}
}

/* ---- who sent to whom (PeerGone(Disconnected)) ---- */

static bool sent_insert(uint8_t (*set)[DERP_KEY_LEN], uint32_t cap, const uint8_t key[DERP_KEY_LEN])
{
	/* All-zero marks an empty slot: zero keys never register. */
	for (uint32_t i = (uint32_t)key_hash(key) & (cap - 1);; i = (i + 1) & (cap - 1)) {
		if (!memcmp(set[i], key, DERP_KEY_LEN))
			return false;
		if (derp_key_is_zero(set[i])) {
			memcpy(set[i], key, DERP_KEY_LEN);
			return true;
		}
	}
}

void derp_peer_note_sent(struct derp_server *s, const uint8_t src[DERP_KEY_LEN], const uint8_t dst[DERP_KEY_LEN])
{
	struct derp_peer *p = derp_peer_get(s, src);
	if (!p)
		return;
	if ((p->nsent + 1) * 4 > p->capsent * 3) {
		uint32_t cap = p->capsent ? p->capsent * 2 : 4;
		uint8_t(*set)[DERP_KEY_LEN] = calloc(cap, DERP_KEY_LEN);
		if (!set)
			return;
		for (uint32_t i = 0; i < p->capsent; i++)
			if (!derp_key_is_zero(p->sent_to[i]))
				sent_insert(set, cap, p->sent_to[i]);
		free(p->sent_to);
		p->sent_to = set;
		p->capsent = cap;
	}
	if (sent_insert(p->sent_to, p->capsent, dst))
		p->nsent++;
}

/* src has left the region: tell everyone it sent to. */
static void gone_from_region(struct derp_server *s, struct derp_peer *p)
{
	if (s->closing)
		return;
	for (uint32_t i = 0; i < p->capsent; i++) {
		if (derp_key_is_zero(p->sent_to[i]))
			continue;
		struct derp_peer *d = derp_peer_find(s, p->sent_to[i]);
		if (!d)
			continue;
		struct derp_conn *k, *next;
		for (k = d->conns; k; k = next) {
			next = k->key_next; /* sending can close a lagging watcher */
			derp_send_peer_gone(k, p->key, DERP_PEER_GONE_DISCONNECTED);
		}
	}
	free(p->sent_to);
	p->sent_to = NULL;
	p->nsent = p->capsent = 0;
}

/* ---- registration and the duplicate policy ---- */

void derp_peer_register(struct derp_conn *c)
{
	struct derp_server *s = c->srv;
	struct derp_peer *p = derp_peer_get(s, c->key);
	if (!p) {
		c->state = CS_CLIENT_INFO; /* not registered: close without unregistering */
		derp_conn_close(c, CR_HANDSHAKE);
		return;
	}
	c->peer = p;
	c->key_prev = NULL;
	c->key_next = p->conns;
	if (p->conns)
		p->conns->key_prev = c;
	p->conns = c;
	p->nconns++;
	/* The newest connection is the active one (last writer wins later). */
	p->active = c;
	c->last_active = ++s->seq;
	s->st.clients++;
	if (p->nconns == 1)
		s->st.unique_keys++;
	else
		s->st.duplicate_conns++;
	broadcast_present(s, c);
}

void derp_peer_unregister(struct derp_conn *c)
{
	struct derp_server *s = c->srv;
	struct derp_peer *p = c->peer;
	if (!p)
		return;
	SPZ_DLIST_UNLINK(p->conns, c, key_prev, key_next);
	c->peer = NULL;
	p->nconns--;
	s->st.clients--;
	if (c->preferred)
		s->st.home_clients--;
	c->preferred = false;
	if (p->nconns)
		s->st.duplicate_conns--;
	if (p->active == c) {
		/* The most recent remaining writer takes over. */
		struct derp_conn *best = NULL;
		for (struct derp_conn *k = p->conns; k; k = k->key_next)
			if (!best || k->last_active > best->last_active)
				best = k;
		p->active = best;
	}
	if (!p->nconns) {
		s->st.unique_keys--;
		if (!s->closing)
			broadcast_gone(s, p->key);
		if (!p->nroutes)
			gone_from_region(s, p);
	}
	derp_peer_maybe_free(s, p);
}

void derp_peer_note_activity(struct derp_conn *c)
{
	struct derp_peer *p = c->peer;
	c->last_active = ++c->srv->seq;
	if (p && p->nconns > 1 && p->active != c)
		p->active = c;
}

/* ---- mesh routes ---- */

void derp_peer_route_add(struct derp_server *s, const uint8_t key[DERP_KEY_LEN], struct derp_mesh_link *l)
{
	struct derp_peer *p = derp_peer_get(s, key);
	if (!p)
		return;
	for (uint16_t i = 0; i < p->nroutes; i++)
		if (p->routes[i] == l)
			return;
	if (p->nroutes == p->caproutes) {
		uint16_t cap = p->caproutes ? (uint16_t)(p->caproutes * 2) : 2;
		struct derp_mesh_link **r = realloc(p->routes, cap * sizeof(*r));
		if (!r)
			return;
		p->routes = r;
		p->caproutes = cap;
	}
	/* The first peer to report a key keeps it; later ones queue behind. */
	p->routes[p->nroutes++] = l;
	l->routes++;
	if (p->nroutes == 1)
		s->st.mesh_routes++;
}

static void route_remove(struct derp_server *s, struct derp_peer *p, struct derp_mesh_link *l)
{
	uint16_t i;
	for (i = 0; i < p->nroutes && p->routes[i] != l; i++)
		;
	if (i == p->nroutes)
		return;
	memmove(p->routes + i, p->routes + i + 1, (size_t)(p->nroutes - i - 1) * sizeof(*p->routes));
	p->nroutes--;
	l->routes--;
	if (!p->nroutes) {
		s->st.mesh_routes--;
		if (!p->nconns)
			gone_from_region(s, p);
	}
	derp_peer_maybe_free(s, p);
}

void derp_peer_route_del(struct derp_server *s, const uint8_t key[DERP_KEY_LEN], struct derp_mesh_link *l)
{
	struct derp_peer *p = derp_peer_find(s, key);
	if (p)
		route_remove(s, p, l);
}

void derp_peer_routes_drop_link(struct derp_server *s, struct derp_mesh_link *l)
{
	for (size_t i = 0; i < s->ptab_cap && l->routes; i++) {
		struct derp_peer *p = s->ptab[i], *next;
		for (; p; p = next) {
			next = p->hnext;
			route_remove(s, p, l);
		}
	}
}
