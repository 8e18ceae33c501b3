#include "base/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define LOG_RING 1024

static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static struct spz_log_record ring[LOG_RING];
static unsigned head, count;
static unsigned long long dropped, errors;
static int min_level = SPZ_LOG_INFO;
static _Thread_local char thread_name[32];

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
		dropped++;
	}
	ring[(head + count) % LOG_RING] = r;
	count++;
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
