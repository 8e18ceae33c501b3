/* For fuzz targets that drive objects living on a runtime: parks the
 * runtime's loop thread for good inside a job, so the fuzzing thread can
 * then call the loop-thread-only code itself, alone and without a thread
 * hop per input. Timers armed from then on never fire by themselves: a
 * target runs deadlines explicitly, so executions are deterministic.
 * Set the objects up (rt_call & co) before parking: rt_call would wait for
 * ever afterwards. */
#ifndef SPANZA_FUZZ_RT_PARK_H
#define SPANZA_FUZZ_RT_PARK_H

#include <semaphore.h>
#include <stdlib.h>

#include "runtime/rt.h"

static sem_t rt_park_parked, rt_park_never;

static void rt_park_job(rt_t *rt, void *arg)
{
	(void)rt;
	(void)arg;
	sem_post(&rt_park_parked);
	for (;;)
		sem_wait(&rt_park_never);
}

static void rt_park(rt_t *rt)
{
	if (sem_init(&rt_park_parked, 0, 0) < 0 || sem_init(&rt_park_never, 0, 0) < 0 ||
	    rt_post(rt, rt_park_job, NULL) < 0)
		abort();
	while (sem_wait(&rt_park_parked) < 0)
		;
}

#endif
