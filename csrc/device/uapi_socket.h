/* dev_uapi: the cross-platform UAPI socket (<dir>/<name>.sock, a Unix
 * stream socket) served on the loop thread, framed exactly like
 * wireguard-go: a request is "get=1\n\n" or "set=1\n" + key=value lines +
 * "\n"; the reply ends with "errno=N\n\n". Several requests per connection
 * are served in order; empty probe connections (wg connects once and closes
 * before the real request) are fine. Bounded: request size and the number
 * of connections (the oldest is dropped). Loop thread only. */
#ifndef SPANZA_DEV_UAPI_H
#define SPANZA_DEV_UAPI_H

#include <stdbool.h>
#include <stddef.h>

#include "runtime/rt.h"

/* A growable byte buffer; oom is set (and appends ignored) when realloc
 * fails or max is reached. */
struct dev_strbuf {
	char *p;
	size_t len, cap, max;
	bool oom;
};
void dev_strbuf_append(struct dev_strbuf *b, const char *s, size_t n);
void dev_strbuf_printf(struct dev_strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void dev_strbuf_free(struct dev_strbuf *b);

/* Handles one whole request: req holds it including the terminating blank
 * line ("get=1\n\n", "set=1\n...\n\n"). Appends the complete reply, which
 * ends with "errno=N\n\n". A negative return (an unknown operation) closes
 * the connection, as wireguard-go does. */
typedef int (*dev_uapi_handler)(void *ctx, const char *req, size_t len, struct dev_strbuf *reply);

struct dev_uapi;

/* Creates dir (0755) if needed and listens on dir/name.sock (mode 0600).
 * A stale socket file (nobody accepting) is replaced; a live one gives
 * -EADDRINUSE. 0 or -errno. */
int dev_uapi_listen(rt_t *rt, const char *dir, const char *name, dev_uapi_handler h, void *ctx, struct dev_uapi **out);
const char *dev_uapi_path(const struct dev_uapi *s);
/* Closes the listener and every connection, and removes the socket file if
 * it is still the one this server created. */
void dev_uapi_close(struct dev_uapi *s);

#endif
