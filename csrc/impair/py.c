/* imp_py_op: impairments on any hop, from Python (impair_py.h). Finds the
 * hop's engine slot on the owning object's loop thread and runs the
 * operation there (rt_call), so settings change between two packets. */
#include "impair/impair.h"

#include <errno.h>
#include <stddef.h>

#include "derp/client/client.h"
#include "device/bind_derp.h"
#include "device/impl.h"
#include "gateway/impl.h"
#include "netstack/ns_wire.h"

struct op_call {
	int kind;
	void *obj;
	int dir, op;
	const struct imp_config *cfg;
	struct imp_stats *out;
	const char *url; /* imp_py_move_relay */
	char *err;
	size_t errlen;
	int rc;
};

static int derp_op(derp_client_t *c, const struct op_call *a)
{
	if (!c)
		return -ENOENT;
	return derp_client_impair(c, a->dir, a->op, a->cfg, a->out);
}

static void op_on_loop(rt_t *rt, void *arg)
{
	(void)rt;
	struct op_call *a = arg;
	switch (a->kind) {
	case IMP_HOP_DEVICE_UDP: {
		dev_device *d = a->obj;
		a->rc = d->closed ? -ESHUTDOWN
			: !d->udp ? -ENOENT
				  : dev_udp_impair(d->udp, a->dir, a->op, a->cfg, a->out);
		break;
	}
	case IMP_HOP_DEVICE_DERP: {
		dev_device *d = a->obj;
		a->rc = d->closed ? -ESHUTDOWN : derp_op(dev_derp_client(d), a);
		break;
	}
	case IMP_HOP_GATEWAY_UDP: a->rc = gw_impair_udp(a->obj, a->dir, a->op, a->cfg, a->out); break;
	case IMP_HOP_GATEWAY_DERP: a->rc = derp_op(((struct gw *)a->obj)->derp, a); break;
	case IMP_HOP_DERP_CLIENT: a->rc = derp_op(derp_pyclient_client(a->obj), a); break;
	case IMP_HOP_WIRE: a->rc = ns_wire_impair(a->obj, a->dir, a->op, a->cfg, a->out); break;
	default: a->rc = -EINVAL;
	}
}

/* The DERP client of a hop (loop thread), NULL if it has none now. */
static derp_client_t *derp_of(int kind, void *obj)
{
	switch (kind) {
	case IMP_HOP_DEVICE_DERP: return ((dev_device *)obj)->closed ? NULL : dev_derp_client(obj);
	case IMP_HOP_GATEWAY_DERP: return ((struct gw *)obj)->derp;
	case IMP_HOP_DERP_CLIENT: return derp_pyclient_client(obj);
	default: return NULL;
	}
}

static void move_on_loop(rt_t *rt, void *arg)
{
	(void)rt;
	struct op_call *a = arg;
	derp_client_t *c = derp_of(a->kind, a->obj);
	a->rc = c ? derp_client_set_url(c, a->url, a->err, a->errlen) : -ENOENT;
}

static rt_t *rt_of(int kind, void *obj)
{
	switch (kind) {
	case IMP_HOP_DEVICE_UDP:
	case IMP_HOP_DEVICE_DERP: return dev_rt(obj);
	case IMP_HOP_GATEWAY_UDP:
	case IMP_HOP_GATEWAY_DERP: return ((struct gw *)obj)->rt;
	case IMP_HOP_DERP_CLIENT: return derp_pyclient_rt(obj);
	case IMP_HOP_WIRE: return ns_wire_rt(obj);
	default: return NULL;
	}
}

int imp_py_op(int kind, void *obj, int dir, int op, const struct imp_config *cfg, struct imp_stats *out)
{
	if (!obj || (dir != IMP_OUT && dir != IMP_IN))
		return -EINVAL;
	if (op == IMP_OP_SET && (!cfg || imp_config_check(cfg) < 0))
		return -EINVAL;
	rt_t *rt = rt_of(kind, obj);
	if (!rt)
		return -EINVAL;
	struct op_call a = {.kind = kind, .obj = obj, .dir = dir, .op = op, .cfg = cfg, .out = out, .rc = -EINVAL};
	int rc = rt_call(rt, op_on_loop, &a);
	return rc < 0 ? rc : a.rc;
}

int imp_py_move_relay(int kind, void *obj, const char *url, char *err, size_t errlen)
{
	rt_t *rt = obj && url ? rt_of(kind, obj) : NULL;
	if (!rt)
		return -EINVAL;
	struct op_call a = {.kind = kind, .obj = obj, .url = url, .err = err, .errlen = errlen, .rc = -EINVAL};
	int rc = rt_call(rt, move_on_loop, &a);
	return rc < 0 ? rc : a.rc;
}
