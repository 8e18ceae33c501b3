/* cffi: a device's DERP bind (spanza/derp_bind.py). Safe from any thread
 * (work runs on the device's loop). 0 / a value >= 0, or -errno. */
#ifndef SPANZA_DEV_BIND_DERP_PY_H
#define SPANZA_DEV_BIND_DERP_PY_H

#include <stddef.h>
#include <stdint.h>

typedef struct dev_device dev_device;
struct derp_client_opts;
struct derp_client_stats;

/* The bind's own counters; the DERP client's are in derp_client_stats. */
struct dev_derp_stats {
	uint64_t rx_packets; /* packets from DERP handed to the device */
	uint64_t rx_bytes;
	uint64_t tx_packets; /* datagrams the device sent through DERP */
	uint64_t tx_bytes;
	uint64_t tx_errors; /* refused by the client (too big, closed) */
	uint64_t peer_gone; /* the relay said a peer is gone / not there */
	uint32_t connected; /* 1 while the DERP connection is up */
};

/* Attaches a DERP bind (see bind_derp.h); err[errlen] says what is wrong. */
int dev_py_derp_attach(dev_device *d, const char *url, const uint8_t *private_key, const struct derp_client_opts *opts,
		       char *err, size_t errlen);
/* Removes the DERP bind (closing its connection). -ENOENT if none. */
int dev_py_derp_detach(dev_device *d);
/* -ENOENT if the device has no DERP bind. derp may be NULL. */
int dev_py_derp_stats(dev_device *d, struct dev_derp_stats *out, struct derp_client_stats *derp);
int dev_py_derp_public_key(dev_device *d, uint8_t *out);
/* Drops the DERP connection now (it reconnects with backoff). */
int dev_py_derp_reconnect(dev_device *d);
/* The last connection error into out[cap]; its length. */
int dev_py_derp_last_error(dev_device *d, char *out, size_t cap);

#endif
