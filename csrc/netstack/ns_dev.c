/* A host on a WireGuard device (csrc/device/): the host's packets go into
 * the tunnel, routed by the peers' allowed IPs; every packet the tunnel
 * delivers goes to the host. Two hosts of one process therefore talk only
 * through WireGuard. */
#include "ns.h"

#include <errno.h>

#include "device/device.h"

void ns_dev_output(void *dev, const uint8_t *ip, size_t len)
{
	/* Drops (no peer for the destination, device closed) are counted by
	 * the device under their reason. */
	dev_send_packet(dev, ip, len);
}

static void sink(void *host, dev_device *d, wg_peer *peer, const uint8_t *ip, size_t len)
{
	(void)d;
	(void)peer;
	ns_host_input(host, ip, len);
}

struct dev_call {
	ns_host_t *h;
	dev_device *d;
};

static void attach_on_loop(rt_t *rt, void *arg)
{
	(void)rt;
	struct dev_call *c = arg;
	dev_set_sink(c->d, sink, c->h);
}

static void detach_on_loop(rt_t *rt, void *arg)
{
	(void)rt;
	struct dev_call *c = arg;
	dev_set_sink(c->d, NULL, NULL);
}

int ns_dev_attach(ns_host_t *h, dev_device *d)
{
	if (dev_rt(d) != h->rt)
		return -EXDEV;
	struct dev_call c = {.h = h, .d = d};
	return rt_call(h->rt, attach_on_loop, &c);
}

int ns_dev_detach(ns_host_t *h, dev_device *d)
{
	if (dev_rt(d) != h->rt)
		return -EXDEV;
	struct dev_call c = {.h = h, .d = d};
	return rt_call(h->rt, detach_on_loop, &c);
}
