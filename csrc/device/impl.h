/* The device object, shared by the files of csrc/device/ (not a public
 * header: other modules use device.h). */
#ifndef SPANZA_DEV_IMPL_H
#define SPANZA_DEV_IMPL_H

#include <stdbool.h>
#include <stdio.h>

#include "device/device.h"
#include "device/queue.h"
#include "device/uapi_socket.h"
#include "device/bind_udp.h"

#define DEV_QUEUE_BYTES (4u << 20)
#define DEV_QUEUE_PACKETS 8192

struct dev_device {
	rt_t *rt;
	wg_device *wg; /* NULL once shut down */
	rt_timer_t *timer;
	struct {
		const struct dev_bind_ops *ops;
		void *bind;
	} binds[DEV_BIND__COUNT];
	struct dev_udp *udp; /* our UDP bind, also binds[DEV_BIND_UDP] */
	struct dev_uapi *uapi;
	dev_sink_fn sink;
	void *sink_ctx;
	struct dev_queue rxq; /* delivered packets for read_packet */
	FILE *keylog;
	bool closed; /* loop thread's view; set in shutdown */
	struct dev_stats st;
	uint64_t clock_offset_ms; /* dev_py_advance_clock: the core's virtual time ahead of the loop's */
};

/* device.c */
int dev_create(dev_device *d, const uint8_t *private_key, int listen_port);
void dev_destroy(dev_device *d);
int dev_uapi_handle(void *ctx, const char *req, size_t len, struct dev_strbuf *reply);
/* keylog.c */
void dev_keylog_write(dev_device *d, const struct wg_handshake_keys *keys);

#endif
