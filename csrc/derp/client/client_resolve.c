/* getaddrinfo off the loop thread: a detached helper thread per lookup.
 *
 * getaddrinfo blocks (DNS timeouts run to seconds) and cannot be cancelled,
 * so the loop never calls it. The lookup object is shared by the thread and
 * the client with a reference count: whoever lets go last frees it, so a
 * client closed mid-lookup neither waits for the thread nor leaves it a
 * dangling pointer. Completion is signalled on an eventfd the loop watches. */
#include "derp/client/client_int.h"

#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

struct derp_resolve {
	atomic_int refs;
	int fd;
	char host[256];
	char port[8];
	int gai_rc;
	int n;
	struct sockaddr_storage addrs[DERP_CLIENT_MAX_ADDRS];
	socklen_t lens[DERP_CLIENT_MAX_ADDRS];
};

static void unref(struct derp_resolve *r)
{
	if (atomic_fetch_sub(&r->refs, 1) != 1)
		return;
	close(r->fd);
	free(r);
}

static void *resolve_main(void *arg)
{
	struct derp_resolve *r = arg;
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_protocol = IPPROTO_TCP};
	struct addrinfo *res = NULL;
	r->gai_rc = getaddrinfo(r->host, r->port, &hints, &res);
	for (struct addrinfo *ai = res; ai && r->n < DERP_CLIENT_MAX_ADDRS; ai = ai->ai_next) {
		if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) || ai->ai_addrlen > sizeof(r->addrs[0]))
			continue;
		memcpy(&r->addrs[r->n], ai->ai_addr, ai->ai_addrlen);
		r->lens[r->n++] = ai->ai_addrlen;
	}
	if (res)
		freeaddrinfo(res);
	/* The eventfd write publishes the results (a syscall is a full barrier
	 * in practice; the reader also takes them only after reading the fd). */
	atomic_thread_fence(memory_order_release);
	uint64_t one = 1;
	ssize_t w = write(r->fd, &one, sizeof(one));
	(void)w;
	unref(r);
	return NULL;
}

struct derp_resolve *derp_resolve_start(const char *host, uint16_t port, int *rc)
{
	struct derp_resolve *r = calloc(1, sizeof(*r));
	if (!r) {
		*rc = -ENOMEM;
		return NULL;
	}
	snprintf(r->host, sizeof(r->host), "%s", host);
	snprintf(r->port, sizeof(r->port), "%u", (unsigned)port);
	r->fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (r->fd < 0) {
		*rc = -errno;
		free(r);
		return NULL;
	}
	atomic_init(&r->refs, 2);
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 256 * 1024);
	pthread_t th;
	int err = pthread_create(&th, &attr, resolve_main, r);
	pthread_attr_destroy(&attr);
	if (err) {
		close(r->fd);
		free(r);
		*rc = -err;
		return NULL;
	}
	*rc = 0;
	return r;
}

int derp_resolve_fd(const struct derp_resolve *r) { return r->fd; }

int derp_resolve_result(struct derp_resolve *r, struct sockaddr_storage *out, socklen_t *lens, int max, char *err,
			size_t errlen)
{
	atomic_thread_fence(memory_order_acquire);
	if (r->gai_rc != 0 || r->n == 0) {
		snprintf(err, errlen, "cannot resolve %s: %s", r->host,
			 r->gai_rc ? gai_strerror(r->gai_rc) : "no IPv4/IPv6 address");
		return -EHOSTUNREACH;
	}
	int n = r->n < max ? r->n : max;
	for (int i = 0; i < n; i++) {
		out[i] = r->addrs[i];
		lens[i] = r->lens[i];
	}
	return n;
}

void derp_resolve_release(struct derp_resolve *r)
{
	if (r)
		unref(r);
}
