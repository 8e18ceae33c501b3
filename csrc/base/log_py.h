/* cffi: logging drained by Python. */
#ifndef SPANZA_LOG_PY_H
#define SPANZA_LOG_PY_H

#define SPZ_LOG_DEBUG 10
#define SPZ_LOG_INFO 20
#define SPZ_LOG_WARNING 30
#define SPZ_LOG_ERROR 40

struct spz_log_record {
	int level;
	char module[16];
	char thread[32];
	char message[240];
};

/* Sets the lowest level that is queued (default SPZ_LOG_INFO). */
void spz_log_set_level(int level);
/* Copies up to max queued records into out; returns how many. */
int spz_log_drain(struct spz_log_record *out, int max);
/* Waits up to timeout_ms until records are queued (or spz_log_wake);
 * returns how many are queued. For the thread that forwards them. */
int spz_log_wait(int timeout_ms);
/* Wakes every spz_log_wait caller now (to stop the forwarding thread). */
void spz_log_wake(void);
/* Records dropped because the queue was full. */
unsigned long long spz_log_dropped(void);
/* Total SPZ_LOG_ERROR records ever logged. */
unsigned long long spz_log_errors(void);

#endif
