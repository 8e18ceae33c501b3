/* Cryptokey routing: two path-compressed binary tries (IPv4, IPv6) mapping
 * prefixes to peers, longest-prefix lookup (spec section 7, kernel
 * allowedips.c). Each node stores its prefix (masked) and length; a node
 * without a peer is an internal branch point. Each peer keeps a list of its
 * nodes, so "remove all of a peer" and listing are cheap. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "wg/wg_internal.h"
#include "base/list.h"

struct wg_aip_node {
	struct wg_aip_node *child[2], *parent;
	wg_peer *peer;
	struct wg_aip_node *peer_prev, *peer_next;
	uint8_t bits[WG_IP6_LEN];
	uint8_t cidr;
	uint8_t family;
};

static int family_bits(int family)
{
	return family == WG_AF_INET ? WG_IP4_LEN * 8 : family == WG_AF_INET6 ? WG_IP6_LEN * 8 : 0;
}

static struct wg_aip_node **root_of(struct wg_allowedips *a, int family)
{
	return family == WG_AF_INET ? &a->root4 : &a->root6;
}

static int bit_at(const uint8_t *key, int i) { return (key[i >> 3] >> (7 - (i & 7))) & 1; }

static void mask(uint8_t *out, const uint8_t *key, int cidr, int bits)
{
	memset(out, 0, WG_IP6_LEN);
	memcpy(out, key, (size_t)bits / 8);
	for (int i = cidr; i < bits; i++)
		out[i >> 3] &= (uint8_t) ~(0x80 >> (i & 7));
}

/* Leading bits equal between a and b, at most max. */
static int common_bits(const uint8_t *a, const uint8_t *b, int max)
{
	int n = 0;
	while (n + 8 <= max && a[n >> 3] == b[n >> 3])
		n += 8;
	while (n < max && bit_at(a, n) == bit_at(b, n))
		n++;
	return n;
}

static bool prefix_matches(const struct wg_aip_node *node, const uint8_t *key)
{
	return common_bits(node->bits, key, node->cidr) == node->cidr;
}

static void peer_unlink(struct wg_aip_node *n)
{
	wg_peer *p = n->peer;
	if (!p)
		return;
	SPZ_DLIST_UNLINK_TAIL(p->aip_head, p->aip_tail, n, peer_prev, peer_next);
	n->peer = NULL;
}

static void peer_link(struct wg_aip_node *n, wg_peer *p)
{
	n->peer = p;
	n->peer_next = NULL;
	n->peer_prev = p->aip_tail;
	if (p->aip_tail)
		p->aip_tail->peer_next = n;
	else
		p->aip_head = n;
	p->aip_tail = n;
}

/* Puts `with` where `old` hangs (under old->parent, or as the root). */
static void replace_in_parent(struct wg_aip_node **root, struct wg_aip_node *old, struct wg_aip_node *with)
{
	struct wg_aip_node *parent = old->parent;
	if (!parent)
		*root = with;
	else
		parent->child[parent->child[1] == old] = with;
	if (with)
		with->parent = parent;
}

static void attach(struct wg_aip_node *parent, struct wg_aip_node *child)
{
	parent->child[bit_at(child->bits, parent->cidr)] = child;
	child->parent = parent;
}

static struct wg_aip_node *node_new(int family, const uint8_t *key, int cidr)
{
	struct wg_aip_node *n = calloc(1, sizeof(*n));
	if (!n)
		return NULL;
	mask(n->bits, key, cidr, family_bits(family));
	n->cidr = (uint8_t)cidr;
	n->family = (uint8_t)family;
	return n;
}

int wg_aip_insert(struct wg_allowedips *a, int family, const uint8_t *addr, int cidr, wg_peer *peer)
{
	int bits = family_bits(family);
	if (!bits || cidr < 0 || cidr > bits)
		return -EINVAL;
	uint8_t key[WG_IP6_LEN];
	mask(key, addr, cidr, bits);
	struct wg_aip_node **root = root_of(a, family), *parent = NULL, *node = *root;

	while (node && node->cidr <= cidr && prefix_matches(node, key)) {
		if (node->cidr == cidr) {
			/* Same prefix: it moves to the newest claimant. */
			if (node->peer != peer) {
				peer_unlink(node);
				peer_link(node, peer);
			}
			return 0;
		}
		parent = node;
		node = node->child[bit_at(key, node->cidr)];
	}
	struct wg_aip_node *nn = node_new(family, key, cidr);
	if (!nn)
		return -ENOMEM;
	peer_link(nn, peer);
	if (!node) {
		if (parent)
			attach(parent, nn);
		else
			*root = nn;
		return 0;
	}
	/* `node` hangs where nn belongs but does not contain it: branch. */
	int limit = node->cidr < cidr ? node->cidr : cidr;
	int common = common_bits(node->bits, key, limit);
	if (common == cidr) {
		replace_in_parent(root, node, nn);
		attach(nn, node);
		return 0;
	}
	struct wg_aip_node *mid = node_new(family, key, common);
	if (!mid) {
		peer_unlink(nn);
		free(nn);
		return -ENOMEM;
	}
	replace_in_parent(root, node, mid);
	attach(mid, node);
	attach(mid, nn);
	return 0;
}

/* Clears a node's peer and prunes branch points that became useless. */
static void node_release(struct wg_aip_node **root, struct wg_aip_node *node)
{
	peer_unlink(node);
	while (node && !node->peer && !(node->child[0] && node->child[1])) {
		struct wg_aip_node *child = node->child[0] ? node->child[0] : node->child[1];
		struct wg_aip_node *parent = node->parent;
		replace_in_parent(root, node, child);
		free(node);
		node = parent;
	}
}

int wg_aip_remove(struct wg_allowedips *a, int family, const uint8_t *addr, int cidr, wg_peer *peer)
{
	int bits = family_bits(family);
	if (!bits || cidr < 0 || cidr > bits)
		return -EINVAL;
	uint8_t key[WG_IP6_LEN];
	mask(key, addr, cidr, bits);
	struct wg_aip_node **root = root_of(a, family), *node = *root;
	while (node && node->cidr <= cidr && prefix_matches(node, key)) {
		if (node->cidr == cidr) {
			if (node->peer != peer)
				return -ENOENT;
			node_release(root, node);
			return 0;
		}
		node = node->child[bit_at(key, node->cidr)];
	}
	return -ENOENT;
}

void wg_aip_remove_by_peer(struct wg_allowedips *a, wg_peer *peer)
{
	while (peer->aip_head) {
		struct wg_aip_node *n = peer->aip_head;
		node_release(root_of(a, n->family), n);
	}
}

wg_peer *wg_aip_lookup(const struct wg_allowedips *a, int family, const uint8_t *addr)
{
	int bits = family_bits(family);
	const struct wg_aip_node *node = family == WG_AF_INET ? a->root4 : family == WG_AF_INET6 ? a->root6 : NULL;
	wg_peer *found = NULL;
	while (node && prefix_matches(node, addr)) {
		if (node->peer)
			found = node->peer;
		if (node->cidr == bits)
			break;
		node = node->child[bit_at(addr, node->cidr)];
	}
	return found;
}

size_t wg_aip_list(const wg_peer *peer, struct wg_allowed_ip *out, size_t max)
{
	size_t n = 0;
	for (const struct wg_aip_node *x = peer->aip_head; x; x = x->peer_next, n++) {
		if (n >= max)
			continue;
		out[n].family = x->family;
		out[n].cidr = x->cidr;
		memcpy(out[n].addr, x->bits, WG_IP6_LEN);
	}
	return n;
}

void wg_aip_foreach(const wg_peer *peer, void (*fn)(void *ctx, const struct wg_allowed_ip *ip), void *ctx)
{
	for (const struct wg_aip_node *x = peer->aip_head; x; x = x->peer_next) {
		struct wg_allowed_ip ip = {.family = x->family, .cidr = x->cidr};
		memcpy(ip.addr, x->bits, WG_IP6_LEN);
		fn(ctx, &ip);
	}
}

static void free_tree(struct wg_aip_node *n)
{
	while (n) {
		free_tree(n->child[0]);
		struct wg_aip_node *next = n->child[1];
		free(n);
		n = next;
	}
}

void wg_aip_free(struct wg_allowedips *a)
{
	free_tree(a->root4);
	free_tree(a->root6);
	a->root4 = a->root6 = NULL;
}
