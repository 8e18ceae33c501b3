/* Port forwards: what TCP and UDP forwards share (lifetime, addresses). */
#include "ns_fwd.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int ns_fwd_os_addr(const struct ns_addr *a, struct sockaddr_storage *ss, socklen_t *len)
{
	memset(ss, 0, sizeof(*ss));
	if (a->family == 4) {
		struct sockaddr_in *s = (struct sockaddr_in *)ss;
		s->sin_family = AF_INET;
		s->sin_port = htons(a->port);
		memcpy(&s->sin_addr, a->ip, 4);
		*len = sizeof(*s);
		return 0;
	}
	if (a->family == 6) {
		struct sockaddr_in6 *s = (struct sockaddr_in6 *)ss;
		s->sin6_family = AF_INET6;
		s->sin6_port = htons(a->port);
		memcpy(&s->sin6_addr, a->ip, 16);
		*len = sizeof(*s);
		return 0;
	}
	return -EAFNOSUPPORT;
}

int ns_fwd_os_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0)
		return -errno;
	if (ss.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&ss)->sin_port);
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return -EAFNOSUPPORT;
}

static void fwd_obj_close(struct ns_obj *o)
{
	struct ns_fwd *f = (struct ns_fwd *)o;
	if (!f->shut) {
		f->shut = true;
		ns_obj_unlink(&f->obj);
		f->shutdown(f);
	}
}

struct ns_fwd *ns_fwd_alloc(ns_host_t *h, int os_fd)
{
	struct ns_fwd *f = calloc(1, sizeof(*f));
	if (!f)
		return NULL;
	f->rt = h->rt;
	f->os_fd = os_fd;
	return f;
}

struct fwd_call {
	ns_host_t *h;
	struct ns_fwd *f;
	ns_fwd_setup_fn *setup;
	int rc;
};

static void start_on_loop(rt_t *rt, void *arg)
{
	(void)rt;
	struct fwd_call *c = arg;
	ns_obj_link(c->h, &c->f->obj, fwd_obj_close);
	c->setup(c->f, &c->rc);
	if (c->rc < 0)
		fwd_obj_close(&c->f->obj);
	ns_stack_kick();
}

int ns_fwd_start(ns_host_t *h, struct ns_fwd *f, ns_fwd_setup_fn *setup, ns_fwd_t **out)
{
	*out = NULL;
	struct fwd_call c = {.h = h, .f = f, .setup = setup, .rc = 0};
	int rc = rt_call(h->rt, start_on_loop, &c);
	if (rc < 0 || c.rc < 0) {
		if (rc < 0 && f->os_fd >= 0)
			close(f->os_fd);
		free(f);
		return rc < 0 ? rc : c.rc;
	}
	*out = f;
	return 0;
}

int ns_fwd_in(ns_host_t *h, int os_fd, const struct ns_addr *to, ns_fwd_setup_fn *setup, ns_fwd_t **out)
{
	*out = NULL;
	int port = ns_fwd_os_port(os_fd);
	struct ns_fwd *f = port >= 0 ? ns_fwd_alloc(h, os_fd) : NULL;
	int rc = f ? ns_addr_to_ip(to, &f->to_ip) : port < 0 ? port : -ENOMEM;
	if (rc < 0) {
		close(os_fd);
		free(f);
		return rc;
	}
	f->port = (uint16_t)port;
	f->to_port = to->port;
	return ns_fwd_start(h, f, setup, out);
}

int ns_fwd_out(ns_host_t *h, uint16_t port, const struct ns_addr *to, ns_fwd_setup_fn *setup, ns_fwd_t **out)
{
	*out = NULL;
	struct ns_fwd *f = ns_fwd_alloc(h, -1);
	if (!f)
		return -ENOMEM;
	f->port = port;
	int rc = ns_fwd_os_addr(to, &f->os_to, &f->os_to_len);
	if (rc < 0) {
		free(f);
		return rc;
	}
	return ns_fwd_start(h, f, setup, out);
}

int ns_fwd_port(ns_fwd_t *f) { return f->port; }

static void close_on_loop(rt_t *rt, void *arg)
{
	(void)rt;
	fwd_obj_close(arg);
	ns_stack_kick();
}

void ns_fwd_close(ns_fwd_t *f)
{
	if (!f)
		return;
	rt_call(f->rt, close_on_loop, f);
	free(f);
}
