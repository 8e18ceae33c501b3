/* cffi: the runtime as Python sees it. */
#ifndef SPANZA_RT_PY_H
#define SPANZA_RT_PY_H

#include <stdint.h>

typedef struct rt rt_t;

rt_t *rt_new(const char *name);
void rt_free(rt_t *rt);
uint64_t rt_now_ms(void);
uint64_t rt_iterations(const rt_t *rt);
/* Round trip through the loop (for tests and as a barrier): 0 or -errno. */
int rt_py_sync(rt_t *rt);
/* Logs msg at SPZ_LOG_ERROR from the loop thread, as a fault in C would
 * (tests of the error surfacing); returns after it is logged. */
int rt_py_log_error(rt_t *rt, const char *msg);

#endif
