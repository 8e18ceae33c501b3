/* Timed waits of the threads that call in from Python: a deadline on
 * CLOCK_MONOTONIC (the clock every condition variable that is waited on
 * with a timeout is created with) and one wait step. */
#ifndef SPANZA_DEADLINE_H
#define SPANZA_DEADLINE_H

#include <pthread.h>
#include <time.h>

/* Initialises cv on CLOCK_MONOTONIC, the clock of the deadlines below (a
 * change of the wall clock must not stretch or cut a wait). */
void spz_cond_init(pthread_cond_t *cv);

/* *ts = now + ms on CLOCK_MONOTONIC; returns ts, or NULL (no deadline:
 * wait for ever) when ms < 0. */
const struct timespec *spz_deadline_in(struct timespec *ts, int ms);

/* One wait on cv (mu held) until woken or past the deadline (NULL: no
 * deadline): 0 when woken, perhaps spuriously; -ETIMEDOUT past it. */
int spz_cond_wait(pthread_cond_t *cv, pthread_mutex_t *mu, const struct timespec *deadline);

#endif
