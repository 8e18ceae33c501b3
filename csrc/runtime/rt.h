/* rt: one event-loop thread per runtime (epoll + eventfd + a timer heap).
 *
 * A runtime owns its sockets, timers and objects; only its thread touches
 * them, so the packet path needs no locks. Other threads (Python) reach it
 * with rt_call (run a function on the loop and wait) or rt_post (fire and
 * forget). Everything named rt_fd_* / rt_timer_* must be called on the loop
 * thread (from a callback or inside rt_call). */
#ifndef SPANZA_RT_H
#define SPANZA_RT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rt_py.h"

typedef struct rt_timer rt_timer_t;

typedef void (*rt_fd_cb)(rt_t *rt, int fd, uint32_t events, void *arg);
typedef void (*rt_timer_cb)(rt_t *rt, rt_timer_t *t, void *arg);
typedef void (*rt_fn)(rt_t *rt, void *arg);
typedef int (*rt_rc_fn)(void *arg);

/* Monotonic and wall clocks. */
uint64_t rt_now_ms(void);
uint64_t rt_now_ns(void);
uint64_t rt_wall_ns(void);

/* Starts the loop thread. NULL with errno set on failure. */
rt_t *rt_new(const char *name);
/* Stops the loop (pending posts run first) and joins it. Objects that still
 * own fds must have been closed by their owners before. */
void rt_free(rt_t *rt);
const char *rt_name(const rt_t *rt);
bool rt_on_loop(const rt_t *rt);

/* Runs fn(rt, arg) on the loop thread and waits for it to return. On the
 * loop thread itself it runs fn directly. 0, or -ESHUTDOWN once stopped. */
int rt_call(rt_t *rt, rt_fn fn, void *arg);
/* rt_call for the entry points of the *_py.c files: runs fn(arg) on the loop
 * and returns what it returned, or -ESHUTDOWN once the loop has stopped. */
int rt_run(rt_t *rt, rt_rc_fn fn, void *arg);
/* Queues fn(rt, arg) to run on the loop; does not wait. */
int rt_post(rt_t *rt, rt_fn fn, void *arg);

/* fd watching (EPOLLIN/EPOLLOUT/... bits). Loop thread only. */
int rt_fd_add(rt_t *rt, int fd, uint32_t events, rt_fd_cb cb, void *arg);
int rt_fd_mod(rt_t *rt, int fd, uint32_t events);
int rt_fd_del(rt_t *rt, int fd);

/* Timers in monotonic milliseconds. Loop thread only (new/free may also be
 * called before the object is published to the loop). */
rt_timer_t *rt_timer_new(rt_t *rt, rt_timer_cb cb, void *arg);
void rt_timer_arm_at(rt_timer_t *t, uint64_t at_ms);
void rt_timer_arm_in(rt_timer_t *t, uint64_t in_ms);
void rt_timer_cancel(rt_timer_t *t);
bool rt_timer_armed(const rt_timer_t *t);
void rt_timer_free(rt_timer_t *t);

/* Work put off to the end of the loop's current round (after this batch of
 * fd events, or of due timers), run once however often it was asked for:
 * e.g. one sendmmsg for the datagrams a round produced instead of a
 * sendto each. The owner embeds the struct, sets fn and arg once, and
 * cancels it before freeing itself. Loop thread only. */
struct rt_defer {
	struct rt_defer *next;
	rt_fn fn;
	void *arg;
	bool queued;
};
void rt_defer(rt_t *rt, struct rt_defer *d);
void rt_defer_cancel(rt_t *rt, struct rt_defer *d);

/* Loop iteration counters, for tests and stats. */
uint64_t rt_iterations(const rt_t *rt);

#endif
