/* The one lwIP stack of the process and the runtime that drives it.
 *
 * lwIP keeps global state, so the first host binds the stack to its runtime;
 * hosts on other runtimes are refused until the last host is gone. A runtime
 * timer runs lwIP's timeouts: it is re-armed after lwIP work to the next
 * deadline lwIP reports (sys_timeouts_sleeptime). */
#include "ns.h"

#include <errno.h>
#include <string.h>

#include "lwip/init.h"
#include "lwip/stats.h"
#include "lwip/priv/tcp_priv.h"
#include "lwip/tcp.h"
#include "lwip/timeouts.h"
#include "base/log.h"
#include "ns_hooks.h"

/* ns_mu guards the binding (ns_rt, ns_users): hosts are created and
 * closed from any thread. The rest, lwIP included, is the stack's loop
 * thread's alone. */
static pthread_mutex_t ns_mu = PTHREAD_MUTEX_INITIALIZER;
static rt_t *ns_rt;          /* guarded by ns_mu */
static int ns_users;         /* hosts, guarded by ns_mu */
static bool ns_inited;       /* loop thread */
static rt_timer_t *ns_timer; /* loop thread */
static rt_t *ns_loop_rt;     /* ns_timer's runtime, loop thread */
static uint64_t ns_due;      /* when ns_timer is armed for */
static bool ns_kicked;       /* ns_timer is due now */
static uint8_t ns_buf[NS_SCRATCH];

ns_host_t *ns_hosts[NS_MAX_HOSTS];
int ns_nhosts_hw;

uint8_t *ns_scratch(void) { return ns_buf; }

rt_t *ns_stack_rt(void)
{
	pthread_mutex_lock(&ns_mu);
	rt_t *rt = ns_rt;
	pthread_mutex_unlock(&ns_mu);
	return rt;
}

/* Arms the timer for lwIP's next timeout. */
static void schedule(void)
{
	u32_t ms = sys_timeouts_sleeptime();
	if (ms == SYS_TIMEOUTS_SLEEPTIME_INFINITE) {
		rt_timer_cancel(ns_timer);
		return;
	}
	uint64_t at = rt_now_ms() + ms;
	if (!rt_timer_armed(ns_timer) || at != ns_due) {
		rt_timer_arm_at(ns_timer, at);
		ns_due = at;
	}
}

static void on_timer(rt_t *rt, rt_timer_t *t, void *arg)
{
	(void)rt;
	(void)t;
	(void)arg;
	ns_kicked = false;
	sys_check_timeouts();
	schedule();
}

/* lwIP work may have added an earlier timeout (tcp_tmr starts when a pcb
 * becomes active): have the timer look again on this loop iteration. One
 * branch per call, so it is cheap enough per packet. */
void ns_stack_kick(void)
{
	if (!ns_timer || ns_kicked)
		return;
	ns_kicked = true;
	rt_timer_arm_at(ns_timer, 0);
	ns_due = 0;
}

/* ---- one ACK per receive batch ----
 *
 * lwIP answers every second full segment with an ACK as soon as it is
 * processed; a batch of 32 datagrams from one recvmmsg thus cost 16 ACKs,
 * each a full trip through WireGuard, the gateway and the relay (a third of
 * all packets of a bulk transfer). tcp_input now leaves its tcp_output to
 * the end of the loop round (LWIP_HOOK_TCP_DEFER_OUTPUT, lwIP patch 0006),
 * as Linux answers a GRO batch with one ACK: the ACK leaves microseconds
 * later and covers the batch. At most NS_ACK_BATCH_DEFAULT segments wait,
 * so a long round still acknowledges along the way. */

static unsigned ns_out_waiting;                      /* segments whose output waits */
static unsigned ns_ack_batch = NS_ACK_BATCH_DEFAULT; /* loop thread; 0: off */

/* The first pcb of a list whose output waits, or NULL. */
static struct tcp_pcb *first_deferred(struct tcp_pcb *pcb)
{
	for (; pcb; pcb = pcb->next)
		if (pcb->flags & TF_OUTPUT_DEFERRED)
			return pcb;
	return NULL;
}

/* tcp_output for each pcb whose input left it waiting. The scan starts over
 * after each output rather than trust a list that output may change; each
 * pcb is taken once, so it ends. A pcb freed meanwhile is on no list and
 * owes nothing. TIME_WAIT pcbs are scanned too: the ACK of a FIN waits
 * like any other. */
static void output_deferred(void)
{
	ns_out_waiting = 0;
	for (;;) {
		struct tcp_pcb *pcb = first_deferred(tcp_active_pcbs);
		if (!pcb)
			pcb = first_deferred(tcp_tw_pcbs);
		if (!pcb)
			return;
		tcp_clear_flags(pcb, TF_OUTPUT_DEFERRED);
		tcp_output(pcb);
	}
}

static void on_out_defer(rt_t *rt, void *arg)
{
	(void)rt;
	(void)arg;
	output_deferred();
	ns_stack_kick();
}

static struct rt_defer ns_out_defer = {.fn = on_out_defer}; /* loop thread */

int ns_hook_tcp_defer_output(struct tcp_pcb *pcb)
{
	if (!ns_loop_rt || !ns_ack_batch)
		return 0;
	/* Only a receiver's ACK waits: a sender's output (new data, a
	 * retransmission) answers each ACK at once, as its loss recovery
	 * decided on that ACK. While segments are out of order the batch's
	 * ACK waits too, with the newest SACK blocks, once the first three
	 * duplicates of the hole have gone at once (lwIP patch 0007, as
	 * Linux's SACK compression and its one ACK per GRO batch): a dozen
	 * duplicates per hole told the sender nothing the last one does not,
	 * and were about half of a bulk receiver's ACKs through derper. */
	if (pcb->unsent || pcb->unacked)
		return 0;
	if (ns_out_waiting >= ns_ack_batch) {
		output_deferred();
		return 0;
	}
	ns_out_waiting++;
	rt_defer(ns_loop_rt, &ns_out_defer);
	return 1;
}

int ns_stack_start(rt_t *rt)
{
	if (!ns_inited) {
		lwip_init();
		ns_inited = true;
	}
	if (!ns_timer) {
		ns_timer = rt_timer_new(rt, on_timer, NULL);
		if (!ns_timer)
			return -ENOMEM;
		ns_loop_rt = rt;
	}
	ns_stack_kick();
	return 0;
}

static void stop_on_loop(rt_t *rt, void *arg)
{
	(void)rt;
	(void)arg;
	pthread_mutex_lock(&ns_mu);
	bool idle = ns_users == 0;
	pthread_mutex_unlock(&ns_mu);
	if (!idle) /* a new host came in meanwhile */
		return;
	output_deferred();
	rt_defer_cancel(rt, &ns_out_defer);
	ns_loop_rt = NULL;
	rt_timer_free(ns_timer);
	ns_timer = NULL;
	ns_kicked = false;
}

int ns_stack_acquire(rt_t *rt)
{
	pthread_mutex_lock(&ns_mu);
	if (ns_rt && ns_rt != rt) {
		pthread_mutex_unlock(&ns_mu);
		return -EXDEV;
	}
	if (ns_users >= NS_MAX_HOSTS) {
		pthread_mutex_unlock(&ns_mu);
		return -EUSERS;
	}
	ns_users++;
	ns_rt = rt;
	pthread_mutex_unlock(&ns_mu);
	return 0;
}

void ns_stack_release(void)
{
	pthread_mutex_lock(&ns_mu);
	rt_t *rt = ns_rt;
	bool last = --ns_users == 0;
	pthread_mutex_unlock(&ns_mu);
	if (!last)
		return;
	/* The timer belongs to this runtime: free it there. lwIP itself stays
	 * initialised (it cannot be re-initialised); lingering TIME_WAIT pcbs
	 * resume their timers on whichever runtime binds the stack next. */
	if (rt_call(rt, stop_on_loop, NULL) < 0) {
		/* The loop has stopped, so nothing else touches the timer. */
		ns_loop_rt = NULL;
		rt_timer_free(ns_timer);
		ns_timer = NULL;
		ns_kicked = false;
	}
	pthread_mutex_lock(&ns_mu);
	if (ns_users == 0)
		ns_rt = NULL;
	pthread_mutex_unlock(&ns_mu);
}

/* fork(): the child gets a consistent copy of ns_mu's state and a lock of
 * its own. Hosts (and ns_rt) in the copy are the parent's: Python refuses
 * new hosts in such a child rather than touch them. */
static void fork_prepare(void) { pthread_mutex_lock(&ns_mu); }

static void fork_parent(void) { pthread_mutex_unlock(&ns_mu); }

static void fork_child(void) { pthread_mutex_init(&ns_mu, NULL); }

__attribute__((constructor)) static void ns_stack_init(void) { pthread_atfork(fork_prepare, fork_parent, fork_child); }

int ns_host_count(void)
{
	pthread_mutex_lock(&ns_mu);
	int n = ns_users;
	pthread_mutex_unlock(&ns_mu);
	return n;
}

struct stats_call {
	const char *proto;
	uint64_t *out;
	int rc;
};

static void copy_proto(const struct stats_proto *s, uint64_t out[4])
{
	out[0] = s->xmit;
	out[1] = s->recv;
	out[2] = s->drop;
	out[3] = s->err;
}

static void stats_on_loop(rt_t *rt, void *arg)
{
	(void)rt;
	struct stats_call *c = arg;
	c->rc = 0;
	if (!strcmp(c->proto, "tcp"))
		copy_proto(&lwip_stats.tcp, c->out);
	else if (!strcmp(c->proto, "udp"))
		copy_proto(&lwip_stats.udp, c->out);
	else if (!strcmp(c->proto, "icmp"))
		copy_proto(&lwip_stats.icmp, c->out);
	else if (!strcmp(c->proto, "icmp6"))
		copy_proto(&lwip_stats.icmp6, c->out);
	else if (!strcmp(c->proto, "ip"))
		copy_proto(&lwip_stats.ip, c->out);
	else if (!strcmp(c->proto, "ip6"))
		copy_proto(&lwip_stats.ip6, c->out);
	else
		c->rc = -EINVAL;
}

int ns_lwip_stats(const char *proto, uint64_t out[4])
{
	rt_t *rt = ns_stack_rt();
	if (!rt)
		return -ENOENT;
	struct stats_call c = {.proto = proto, .out = out, .rc = -ESHUTDOWN};
	int rc = rt_call(rt, stats_on_loop, &c);
	return rc < 0 ? rc : c.rc;
}

static void recovery_on_loop(rt_t *rt, void *arg)
{
	(void)rt;
	struct ns_tcp_recovery *o = arg;
	const struct tcp_recovery_stats *s = &tcp_recovery_stats;
	*o = (struct ns_tcp_recovery){.rto = s->rto,
				      .fast_rexmit = s->fast_rexmit,
				      .partial_ack = s->partial_ack,
				      .sack_rexmit = s->sack_rexmit,
				      .tlp = s->tlp,
				      .rack_lost = s->rack_lost,
				      .paced = s->paced,
				      .dsack = s->dsack,
				      .undo = s->undo};
}

int ns_tcp_recovery_stats(struct ns_tcp_recovery *out)
{
	rt_t *rt = ns_stack_rt();
	if (!rt)
		return -ENOENT;
	*out = (struct ns_tcp_recovery){0};
	return rt_call(rt, recovery_on_loop, out);
}

static void pacing_on_loop(rt_t *rt, void *arg)
{
	(void)rt;
	tcp_pacing = (u8_t)(*(int *)arg != 0);
}

int ns_tcp_set_pacing(int on)
{
	rt_t *rt = ns_stack_rt();
	if (!rt)
		return -ENOENT;
	return rt_call(rt, pacing_on_loop, &on);
}

static void ack_batch_on_loop(rt_t *rt, void *arg)
{
	(void)rt;
	output_deferred(); /* what waits under the old limit goes now */
	ns_ack_batch = *(unsigned *)arg;
}

int ns_tcp_set_ack_batch(int segments)
{
	if (segments < 0 || segments > NS_ACK_BATCH_MAX)
		return -EINVAL;
	rt_t *rt = ns_stack_rt();
	if (!rt)
		return -ENOENT;
	unsigned n = (unsigned)segments;
	return rt_call(rt, ack_batch_on_loop, &n);
}
