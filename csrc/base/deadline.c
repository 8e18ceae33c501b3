#include "base/deadline.h"

#include <errno.h>

#define NS_PER_SEC 1000000000L
#define NS_PER_MS 1000000L

void spz_cond_init(pthread_cond_t *cv)
{
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(cv, &ca);
	pthread_condattr_destroy(&ca);
}

const struct timespec *spz_deadline_in(struct timespec *ts, int ms)
{
	if (ms < 0)
		return NULL;
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (long)(ms % 1000) * NS_PER_MS;
	if (ts->tv_nsec >= NS_PER_SEC) {
		ts->tv_sec++;
		ts->tv_nsec -= NS_PER_SEC;
	}
	return ts;
}

int spz_cond_wait(pthread_cond_t *cv, pthread_mutex_t *mu, const struct timespec *deadline)
{
	if (!deadline)
		return pthread_cond_wait(cv, mu) == 0 ? 0 : -EINVAL;
	return pthread_cond_timedwait(cv, mu, deadline) == ETIMEDOUT ? -ETIMEDOUT : 0;
}
