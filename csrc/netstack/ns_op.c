/* Waitable operations: started on the loop, waited for by a caller thread
 * (with the GIL released), cancelled on the loop if the caller gives up. */
#include "ns.h"

#include "base/deadline.h"

#include <errno.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static void op_close(struct ns_obj *o)
{
	struct ns_op *op = (struct ns_op *)o;
	if (op->cancel)
		op->cancel(op);
	ns_op_complete(op, -ESHUTDOWN, 0);
}

struct ns_op *ns_op_new(ns_host_t *h, enum ns_op_kind kind)
{
	struct ns_op *op = calloc(1, sizeof(*op));
	if (!op)
		return NULL;
	op->rt = h->rt;
	op->kind = kind;
	pthread_mutex_init(&op->mu, NULL);
	spz_cond_init(&op->cv);
	ns_obj_link(h, &op->obj, op_close);
	op->linked = true;
	return op;
}

void ns_op_complete(struct ns_op *op, int rc, uint64_t value)
{
	if (!op->linked)
		return;
	op->linked = false;
	op->cancel = NULL;
	ns_obj_unlink(&op->obj);
	pthread_mutex_lock(&op->mu);
	op->rc = rc;
	op->value = value;
	op->done = true;
	pthread_cond_broadcast(&op->cv);
	pthread_mutex_unlock(&op->mu);
}

int ns_op_wait(ns_op_t *op, int timeout_ms)
{
	struct timespec ts;
	const struct timespec *until = spz_deadline_in(&ts, timeout_ms);
	pthread_mutex_lock(&op->mu);
	while (!op->done && timeout_ms != 0)
		if (spz_cond_wait(&op->cv, &op->mu, until) < 0)
			break;
	int rc = op->done ? op->rc : -EINPROGRESS;
	if (op->done && rc >= 0 && op->kind == NS_OP_CONNECT)
		op->taken = true; /* the fd now belongs to the caller */
	pthread_mutex_unlock(&op->mu);
	return rc;
}

uint64_t ns_op_value(ns_op_t *op)
{
	pthread_mutex_lock(&op->mu);
	uint64_t v = op->value;
	pthread_mutex_unlock(&op->mu);
	return v;
}

static void cancel_on_loop(rt_t *rt, void *arg)
{
	(void)rt;
	struct ns_op *op = arg;
	if (!op->linked)
		return;
	if (op->cancel)
		op->cancel(op);
	ns_op_complete(op, -ECANCELED, 0);
	ns_stack_kick();
}

void ns_op_free(ns_op_t *op)
{
	if (!op)
		return;
	rt_call(op->rt, cancel_on_loop, op);
	/* A result nobody took (a connection that completed after the caller
	 * gave up) is closed here. */
	if (op->done && op->rc >= 0 && op->kind == NS_OP_CONNECT && !op->taken)
		close(op->rc);
	pthread_mutex_destroy(&op->mu);
	pthread_cond_destroy(&op->cv);
	free(op);
}
