#include "base/log.h"

#include "base/deadline.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define LOG_RING 1024

/* Any thread logs; Python drains. log_mu guards ring, head, count and the
 * increments of dropped (an atomic, read without the lock); it is held only
 * to copy one record. errors and min_level are atomics. */
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t log_cv = PTHREAD_COND_INITIALIZER; /* records queued, or a wake-up */
static unsigned wakeups;                                 /* guarded by log_mu */
static struct spz_log_record ring[LOG_RING];
static unsigned head, count;
static unsigned long long dropped, errors;
static int min_level = SPZ_LOG_INFO;
static _Thread_local char thread_name[32];

/* The condition waits on CLOCK_MONOTONIC, so wall-clock steps do not stretch a wait. */
static void init_cond(void) { spz_cond_init(&log_cv); }

void spz_log_set_level(int level) { __atomic_store_n(&min_level, level, __ATOMIC_RELAXED); }

int spz_log_enabled(int level) { return level >= __atomic_load_n(&min_level, __ATOMIC_RELAXED); }

void spz_log_thread_name(const char *name) { snprintf(thread_name, sizeof(thread_name), "%s", name); }

void spz_log(int level, const char *module, const char *fmt, ...)
{
	if (level >= SPZ_LOG_ERROR)
		__atomic_add_fetch(&errors, 1, __ATOMIC_RELAXED);
	if (!spz_log_enabled(level))
		return;
	struct spz_log_record r;
	r.level = level;
	snprintf(r.module, sizeof(r.module), "%s", module);
	snprintf(r.thread, sizeof(r.thread), "%s", thread_name[0] ? thread_name : "python");
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(r.message, sizeof(r.message), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&log_mu);
	if (count == LOG_RING) {
		/* Keep the newest: drop the oldest record. */
		head = (head + 1) % LOG_RING;
		count--;
		__atomic_add_fetch(&dropped, 1, __ATOMIC_RELAXED);
	}
	ring[(head + count) % LOG_RING] = r;
	count++;
	pthread_cond_signal(&log_cv);
	pthread_mutex_unlock(&log_mu);
}

int spz_log_drain(struct spz_log_record *out, int max)
{
	int n = 0;
	pthread_mutex_lock(&log_mu);
	while (count && n < max) {
		out[n++] = ring[head];
		head = (head + 1) % LOG_RING;
		count--;
	}
	pthread_mutex_unlock(&log_mu);
	return n;
}

unsigned long long spz_log_dropped(void) { return __atomic_load_n(&dropped, __ATOMIC_RELAXED); }

unsigned long long spz_log_errors(void) { return __atomic_load_n(&errors, __ATOMIC_RELAXED); }

int spz_log_wait(int timeout_ms)
{
	struct timespec until;
	spz_deadline_in(&until, timeout_ms);
	pthread_mutex_lock(&log_mu);
	unsigned seen = wakeups;
	int rc = 0;
	while (!count && wakeups == seen && rc == 0)
		rc = spz_cond_wait(&log_cv, &log_mu, &until);
	int n = (int)count;
	pthread_mutex_unlock(&log_mu);
	return n;
}

void spz_log_wake(void)
{
	pthread_mutex_lock(&log_mu);
	wakeups++;
	pthread_cond_broadcast(&log_cv);
	pthread_mutex_unlock(&log_mu);
}

/* fork(): hold the lock across it so the child's copy is consistent, then
 * give the child a fresh lock and condition (no other thread exists there to
 * own them) and an empty queue (the parent drains its own records). */
static void fork_prepare(void) { pthread_mutex_lock(&log_mu); }

static void fork_parent(void) { pthread_mutex_unlock(&log_mu); }

static void fork_child(void)
{
	pthread_mutex_init(&log_mu, NULL);
	init_cond();
	head = count = 0;
}

__attribute__((constructor)) static void log_init(void)
{
	init_cond();
	pthread_atfork(fork_prepare, fork_parent, fork_child);
}
