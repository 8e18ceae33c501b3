/* Logging from C threads: messages go to a bounded in-memory queue that
 * Python drains (callbacks into Python never run on C threads). Errors are
 * counted separately so a test harness can fail the test that caused them. */
#ifndef SPANZA_LOG_H
#define SPANZA_LOG_H

#include "base/log_py.h"

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
void spz_log(int level, const char *module, const char *fmt, ...);
void spz_log_thread_name(const char *name);
int spz_log_enabled(int level);

#endif
