/* derp client send queue: packets that wait while there is no connection
 * (or the connection's write buffer is full), bounded by queue_size. When
 * full the oldest is dropped: a queued packet that waited longest is the
 * most likely to be stale (WireGuard retransmits its handshakes anyway). */
#include "derp/client/client_int.h"
#include "base/list.h"
#include "trace/trace.h"

#include <stdlib.h>
#include <string.h>

void derp_cl_queue_push(struct derp_client *c, const uint8_t dst[32], const uint8_t *data, size_t len)
{
	if (c->qlen >= c->o.queue_size && c->qhead) {
		struct derp_qent *old = c->qhead;
		c->qhead = old->next;
		if (!c->qhead)
			c->qtail = NULL;
		c->qlen--;
		TR_TAP(drop, TR_HOP_DC_QUEUE, tr_key_id(c->pub), old->dst, TR_R_DC_QUEUE_OLDEST, old->data, old->len);
		free(old);
		c->st.drops_queue_full++;
	}
	TR_TAP(derp, TR_HOP_DC_QUEUE, tr_key_id(c->pub), dst, DERP_FRAME_SEND_PACKET, dst, data, len);
	struct derp_qent *e = malloc(sizeof(*e) + len);
	if (!e) {
		TR_TAP(drop, TR_HOP_DC_QUEUE, tr_key_id(c->pub), dst, TR_R_DC_QUEUE_OLDEST, NULL, 0);
		c->st.drops_queue_full++;
		return;
	}
	e->next = NULL;
	memcpy(e->dst, dst, 32);
	e->len = (uint32_t)len;
	if (len)
		memcpy(e->data, data, len);
	SPZ_FIFO_PUSH(c->qhead, c->qtail, c->qlen, e, next);
}

/* Moves queued packets into the write buffer while there is room. */
void derp_cl_queue_drain(struct derp_client *c)
{
	while (c->qhead && c->state == DERP_CLIENT_CONNECTED && c->wlen < c->o.write_buffer_max) {
		struct derp_qent *e = c->qhead;
		c->qhead = e->next;
		if (!c->qhead)
			c->qtail = NULL;
		c->qlen--;
		derp_cl_encode_send(c, e->dst, e->data, e->len);
		free(e);
	}
}

void derp_cl_queue_clear(struct derp_client *c)
{
	while (c->qhead) {
		struct derp_qent *e = c->qhead;
		c->qhead = e->next;
		free(e);
	}
	c->qtail = NULL;
	c->qlen = 0;
}
