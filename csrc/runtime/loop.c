/* The event loop: epoll for fds, an eventfd for cross-thread wake-ups, a
 * binary min-heap of timers. One thread per runtime. */
#include "rt.h"
#include "base/log.h"
#include "trace/trace.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#define RT_MAX_EVENTS 256
#define RT_MAX_WAIT_MS 1000 /* bounded sleep, so a lost wake-up cannot hang */
#define RT_COMM_LEN 16      /* a thread's name in the kernel, with its NUL */

struct rt_timer {
	rt_t *rt;
	rt_timer_cb cb;
	void *arg;
	uint64_t at;
	size_t idx; /* position in the heap, SIZE_MAX when not armed */
};

struct rt_fdent {
	int fd;
	rt_fd_cb cb;
	void *arg;
	struct rt_fdent *next; /* free list of dead entries, reclaimed per iteration */
	bool dead;
};

struct rt_job {
	rt_fn fn;
	void *arg;
	struct rt_job *next;
	/* for rt_call: the caller waits on done (guarded by rt->mu) */
	bool wait;
	bool done;
};

/* Locking: mu guards the job queue (jobs_head/tail, each queued job's done
 * flag), stopping and stopped; any thread queues (rt_post/rt_call), the
 * loop thread drains. cv (with mu) wakes rt_call callers when their job is
 * done. Everything else (heap, fds, graveyard, iterations) is the loop
 * thread's alone; name, epfd, evfd and thread are set before the loop starts
 * and only read afterwards. */
struct rt {
	char name[32];
	int epfd;
	int evfd;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv; /* with mu: a job's done flag was set */
	struct rt_job *jobs_head, *jobs_tail;
	bool stopping;
	bool stopped;
	rt_timer_t **heap;
	size_t nheap, capheap;
	struct rt_fdent **fds; /* indexed by fd */
	size_t capfds;
	struct rt_fdent *graveyard;
	struct rt_defer *deferred; /* queued rt_defer entries, newest first */
	uint64_t iterations;
};

uint64_t rt_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t rt_now_ms(void) { return rt_now_ns() / 1000000ull; }

uint64_t rt_wall_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- timer heap ---- */

static void heap_swap(rt_t *rt, size_t a, size_t b)
{
	rt_timer_t *t = rt->heap[a];
	rt->heap[a] = rt->heap[b];
	rt->heap[b] = t;
	rt->heap[a]->idx = a;
	rt->heap[b]->idx = b;
}

static void heap_up(rt_t *rt, size_t i)
{
	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (rt->heap[p]->at <= rt->heap[i]->at)
			break;
		heap_swap(rt, p, i);
		i = p;
	}
}

static void heap_down(rt_t *rt, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;
		if (l < rt->nheap && rt->heap[l]->at < rt->heap[m]->at)
			m = l;
		if (r < rt->nheap && rt->heap[r]->at < rt->heap[m]->at)
			m = r;
		if (m == i)
			return;
		heap_swap(rt, m, i);
		i = m;
	}
}

static void heap_remove(rt_t *rt, size_t i)
{
	rt_timer_t *t = rt->heap[i];
	rt->nheap--;
	if (i != rt->nheap) {
		rt->heap[i] = rt->heap[rt->nheap];
		rt->heap[i]->idx = i;
		heap_down(rt, i);
		heap_up(rt, i);
	}
	t->idx = SIZE_MAX;
}

rt_timer_t *rt_timer_new(rt_t *rt, rt_timer_cb cb, void *arg)
{
	rt_timer_t *t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->rt = rt;
	t->cb = cb;
	t->arg = arg;
	t->idx = SIZE_MAX;
	return t;
}

bool rt_timer_armed(const rt_timer_t *t) { return t && t->idx != SIZE_MAX; }

void rt_timer_cancel(rt_timer_t *t)
{
	if (t && t->idx != SIZE_MAX)
		heap_remove(t->rt, t->idx);
}

void rt_timer_arm_at(rt_timer_t *t, uint64_t at_ms)
{
	rt_t *rt = t->rt;
	if (t->idx != SIZE_MAX) {
		t->at = at_ms;
		heap_down(rt, t->idx);
		heap_up(rt, t->idx);
		return;
	}
	if (rt->nheap == rt->capheap) {
		size_t cap = rt->capheap ? rt->capheap * 2 : 64;
		rt_timer_t **h = realloc(rt->heap, cap * sizeof(*h));
		if (!h) {
			spz_log(SPZ_LOG_ERROR, "rt", "%s: out of memory arming a timer", rt->name);
			return;
		}
		rt->heap = h;
		rt->capheap = cap;
	}
	t->at = at_ms;
	t->idx = rt->nheap;
	rt->heap[rt->nheap++] = t;
	heap_up(rt, t->idx);
}

void rt_timer_arm_in(rt_timer_t *t, uint64_t in_ms) { rt_timer_arm_at(t, rt_now_ms() + in_ms); }

void rt_timer_free(rt_timer_t *t)
{
	if (!t)
		return;
	rt_timer_cancel(t);
	free(t);
}

/* ---- fds ---- */

int rt_fd_add(rt_t *rt, int fd, uint32_t events, rt_fd_cb cb, void *arg)
{
	if (fd < 0)
		return -EBADF;
	if ((size_t)fd >= rt->capfds) {
		size_t cap = rt->capfds ? rt->capfds : 64;
		while (cap <= (size_t)fd)
			cap *= 2;
		struct rt_fdent **f = realloc(rt->fds, cap * sizeof(*f));
		if (!f)
			return -ENOMEM;
		memset(f + rt->capfds, 0, (cap - rt->capfds) * sizeof(*f));
		rt->fds = f;
		rt->capfds = cap;
	}
	if (rt->fds[fd])
		return -EEXIST;
	struct rt_fdent *e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	e->fd = fd;
	e->cb = cb;
	e->arg = arg;
	struct epoll_event ev = {.events = events, .data.ptr = e};
	if (epoll_ctl(rt->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		int err = errno;
		free(e);
		return -err;
	}
	rt->fds[fd] = e;
	return 0;
}

int rt_fd_mod(rt_t *rt, int fd, uint32_t events)
{
	if (fd < 0 || (size_t)fd >= rt->capfds || !rt->fds[fd])
		return -ENOENT;
	struct epoll_event ev = {.events = events, .data.ptr = rt->fds[fd]};
	return epoll_ctl(rt->epfd, EPOLL_CTL_MOD, fd, &ev) < 0 ? -errno : 0;
}

int rt_fd_del(rt_t *rt, int fd)
{
	if (fd < 0 || (size_t)fd >= rt->capfds || !rt->fds[fd])
		return -ENOENT;
	struct rt_fdent *e = rt->fds[fd];
	epoll_ctl(rt->epfd, EPOLL_CTL_DEL, fd, NULL);
	rt->fds[fd] = NULL;
	/* Events for this entry may still sit in the current epoll batch:
	 * mark it dead and free it after the batch. */
	e->dead = true;
	e->next = rt->graveyard;
	rt->graveyard = e;
	return 0;
}

/* ---- jobs ---- */

static int enqueue(rt_t *rt, struct rt_job *j)
{
	pthread_mutex_lock(&rt->mu);
	if (rt->stopped) {
		pthread_mutex_unlock(&rt->mu);
		return -ESHUTDOWN;
	}
	if (rt->jobs_tail)
		rt->jobs_tail->next = j;
	else
		rt->jobs_head = j;
	rt->jobs_tail = j;
	pthread_mutex_unlock(&rt->mu);
	uint64_t one = 1;
	ssize_t n = write(rt->evfd, &one, sizeof(one));
	(void)n; /* EAGAIN means the counter is already non-zero: still woken */
	return 0;
}

int rt_post(rt_t *rt, rt_fn fn, void *arg)
{
	struct rt_job *j = calloc(1, sizeof(*j));
	if (!j)
		return -ENOMEM;
	j->fn = fn;
	j->arg = arg;
	int rc = enqueue(rt, j);
	if (rc < 0)
		free(j);
	return rc;
}

int rt_call(rt_t *rt, rt_fn fn, void *arg)
{
	if (rt_on_loop(rt)) {
		fn(rt, arg);
		return 0;
	}
	struct rt_job j = {.fn = fn, .arg = arg, .wait = true};
	int rc = enqueue(rt, &j);
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&rt->mu);
	while (!j.done)
		pthread_cond_wait(&rt->cv, &rt->mu);
	pthread_mutex_unlock(&rt->mu);
	return 0;
}

struct rc_call {
	rt_rc_fn fn;
	void *arg;
	int rc;
};

static void do_rc_call(rt_t *rt, void *arg)
{
	(void)rt;
	struct rc_call *c = arg;
	c->rc = c->fn(c->arg);
}

int rt_run(rt_t *rt, rt_rc_fn fn, void *arg)
{
	struct rc_call c = {.fn = fn, .arg = arg, .rc = -ESHUTDOWN};
	int rc = rt_call(rt, do_rc_call, &c);
	return rc < 0 ? rc : c.rc;
}

static void run_deferred(rt_t *rt);

static void run_jobs(rt_t *rt)
{
	pthread_mutex_lock(&rt->mu);
	struct rt_job *j = rt->jobs_head;
	rt->jobs_head = rt->jobs_tail = NULL;
	pthread_mutex_unlock(&rt->mu);
	while (j) {
		struct rt_job *next = j->next;
		TR_TAP(ctx_clear);
		j->fn(rt, j->arg);
		/* What a call put off is done when its caller resumes (a send
		 * from Python has left when the call returns). */
		run_deferred(rt);
		if (j->wait) {
			pthread_mutex_lock(&rt->mu);
			j->done = true;
			pthread_cond_broadcast(&rt->cv);
			pthread_mutex_unlock(&rt->mu);
		} else {
			free(j);
		}
		j = next;
	}
}

static void on_wake(rt_t *rt, int fd, uint32_t events, void *arg)
{
	(void)events;
	(void)arg;
	uint64_t v;
	ssize_t n = read(fd, &v, sizeof(v));
	(void)n;
	run_jobs(rt);
}

/* ---- loop ---- */

static int run_timers(rt_t *rt)
{
	uint64_t now = rt_now_ms();
	/* Bounded: timers re-armed for "now" run on the next iteration. */
	size_t budget = rt->nheap;
	while (rt->nheap && rt->heap[0]->at <= now && budget--) {
		rt_timer_t *t = rt->heap[0];
		heap_remove(rt, 0);
		TR_TAP(ctx_clear);
		t->cb(rt, t, t->arg);
	}
	if (!rt->nheap)
		return RT_MAX_WAIT_MS;
	uint64_t at = rt->heap[0]->at;
	now = rt_now_ms();
	if (at <= now)
		return 0;
	return at - now > RT_MAX_WAIT_MS ? RT_MAX_WAIT_MS : (int)(at - now);
}

void rt_defer(rt_t *rt, struct rt_defer *d)
{
	if (d->queued)
		return;
	d->queued = true;
	d->next = rt->deferred;
	rt->deferred = d;
}

void rt_defer_cancel(rt_t *rt, struct rt_defer *d)
{
	if (!d->queued)
		return;
	for (struct rt_defer **pp = &rt->deferred; *pp; pp = &(*pp)->next) {
		if (*pp == d) {
			*pp = d->next;
			break;
		}
	}
	d->queued = false;
	d->next = NULL;
}

/* Runs what the round put off; entries queued meanwhile run too. */
static void run_deferred(rt_t *rt)
{
	while (rt->deferred) {
		struct rt_defer *d = rt->deferred;
		rt->deferred = d->next;
		d->next = NULL;
		d->queued = false;
		TR_TAP(ctx_clear);
		d->fn(rt, d->arg);
	}
}

static bool should_stop(rt_t *rt)
{
	pthread_mutex_lock(&rt->mu);
	bool s = rt->stopping && !rt->jobs_head;
	pthread_mutex_unlock(&rt->mu);
	return s;
}

static void *loop_main(void *arg)
{
	rt_t *rt = arg;
	struct epoll_event evs[RT_MAX_EVENTS];
	spz_log_thread_name(rt->name);
	/* The OS's name too (top -H, perf, gdb, /proc/.../comm), cut to the
	 * kernel's 15 characters: each runtime's thread is told apart. */
	char comm[RT_COMM_LEN];
	memcpy(comm, rt->name, sizeof(comm) - 1);
	comm[sizeof(comm) - 1] = '\0';
	pthread_setname_np(pthread_self(), comm);
	while (!should_stop(rt)) {
		int timeout = run_timers(rt);
		run_deferred(rt);
		int n = epoll_wait(rt->epfd, evs, RT_MAX_EVENTS, timeout);
		if (n < 0 && errno != EINTR) {
			spz_log(SPZ_LOG_ERROR, "rt", "%s: epoll_wait: %s", rt->name, strerror(errno));
			break;
		}
		for (int i = 0; i < n; i++) {
			struct rt_fdent *e = evs[i].data.ptr;
			TR_TAP(ctx_clear);
			if (!e->dead)
				e->cb(rt, e->fd, evs[i].events, e->arg);
		}
		run_deferred(rt);
		while (rt->graveyard) {
			struct rt_fdent *e = rt->graveyard;
			rt->graveyard = e->next;
			free(e);
		}
		rt->iterations++;
	}
	/* Refuse new jobs, then finish what is queued so no caller waits forever. */
	pthread_mutex_lock(&rt->mu);
	rt->stopped = true;
	pthread_mutex_unlock(&rt->mu);
	run_jobs(rt);
	run_deferred(rt);
	return NULL;
}

static void request_stop(rt_t *rt, void *arg)
{
	(void)arg;
	pthread_mutex_lock(&rt->mu);
	rt->stopping = true;
	pthread_mutex_unlock(&rt->mu);
}

rt_t *rt_new(const char *name)
{
	rt_t *rt = calloc(1, sizeof(*rt));
	if (!rt)
		return NULL;
	snprintf(rt->name, sizeof(rt->name), "%s", name ? name : "spanza");
	pthread_mutex_init(&rt->mu, NULL);
	pthread_cond_init(&rt->cv, NULL);
	rt->epfd = epoll_create1(EPOLL_CLOEXEC);
	rt->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (rt->epfd < 0 || rt->evfd < 0)
		goto fail;
	if (rt_fd_add(rt, rt->evfd, EPOLLIN, on_wake, NULL) < 0)
		goto fail;
	if (pthread_create(&rt->thread, NULL, loop_main, rt) != 0)
		goto fail;
	return rt;
fail:;
	int err = errno;
	if (rt->epfd >= 0)
		close(rt->epfd);
	if (rt->evfd >= 0)
		close(rt->evfd);
	free(rt->fds);
	free(rt);
	errno = err ? err : ENOMEM;
	return NULL;
}

void rt_free(rt_t *rt)
{
	if (!rt)
		return;
	if (rt_post(rt, request_stop, NULL) == 0)
		pthread_join(rt->thread, NULL);
	for (size_t i = 0; i < rt->capfds; i++)
		free(rt->fds[i]);
	while (rt->graveyard) {
		struct rt_fdent *e = rt->graveyard;
		rt->graveyard = e->next;
		free(e);
	}
	for (size_t i = 0; i < rt->nheap; i++)
		rt->heap[i]->idx = SIZE_MAX;
	free(rt->heap);
	free(rt->fds);
	close(rt->epfd);
	close(rt->evfd);
	pthread_mutex_destroy(&rt->mu);
	pthread_cond_destroy(&rt->cv);
	free(rt);
}

const char *rt_name(const rt_t *rt) { return rt->name; }

bool rt_on_loop(const rt_t *rt) { return pthread_equal(pthread_self(), rt->thread); }

uint64_t rt_iterations(const rt_t *rt) { return rt->iterations; }

static void nop(rt_t *rt, void *arg)
{
	(void)rt;
	(void)arg;
}

int rt_py_sync(rt_t *rt) { return rt_call(rt, nop, NULL); }

static void log_error(rt_t *rt, void *arg) { spz_log(SPZ_LOG_ERROR, "rt", "%s: %s", rt->name, (const char *)arg); }

int rt_py_log_error(rt_t *rt, const char *msg) { return rt_call(rt, log_error, (void *)msg); }
