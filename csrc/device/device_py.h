/* cffi: devices as Python sees them (spanza/device.py). Every function is
 * safe to call from any thread: it runs its work on the device's loop with
 * rt_call, or (read_packet) waits on the device's queue with the GIL
 * released. Returns 0 / a value >= 0, or -errno. */
#ifndef SPANZA_DEV_DEVICE_PY_H
#define SPANZA_DEV_DEVICE_PY_H

#include <stddef.h>
#include <stdint.h>

typedef struct dev_device dev_device;
struct wg_device_stats;
struct rt;

/* NOLINTNEXTLINE(bugprone-macro-parentheses): cffi reads only a plain integer */
#define DEV_NO_UDP -1

/* The I/O layer's counters (the core's are in struct wg_device_stats). */
struct dev_stats {
	uint64_t udp_rx_datagrams;
	uint64_t udp_rx_bytes;
	uint64_t udp_rx_truncated; /* larger than the receive buffer: dropped */
	uint64_t udp_rx_errors;
	uint64_t udp_tx_datagrams;
	uint64_t udp_tx_bytes;
	uint64_t udp_tx_dropped; /* socket buffer full: dropped */
	uint64_t udp_tx_errors;  /* other send errors (unreachable...) */
	uint64_t tx_no_bind;     /* endpoint family without a bind: dropped */
	uint64_t tx_bind_errors; /* a bind's send failed: dropped */
	uint64_t queue_packets;  /* delivered into the read queue */
	uint64_t queue_dropped;  /* read queue full (or packet too big): dropped */
	uint64_t queue_read;     /* taken by read_packet */
	uint64_t sink_packets;   /* handed to the sink */
	uint64_t uapi_requests;  /* requests served on the UAPI socket */
	uint64_t timer_runs;     /* wg_device_tick calls */
	uint32_t udp_port;
	uint32_t queue_length; /* packets waiting in the read queue now */
};

/* A device on runtime rt. private_key: 32 bytes or NULL (none yet).
 * listen_port: 0..65535 (0 = any free port) or DEV_NO_UDP for no UDP bind.
 * NULL with *err = -errno (-EADDRINUSE...). */
dev_device *dev_py_new(struct rt *rt, const uint8_t *private_key, int listen_port, int *err);
/* Stops all I/O (sockets, UAPI socket file, timer), frees the core, wakes
 * read_packet callers (they get -ESHUTDOWN). Idempotent. Later calls get
 * -ESHUTDOWN. The memory stays until dev_py_free. */
void dev_py_shutdown(dev_device *d);
/* Frees the device after shutdown, once no thread is inside a call. */
void dev_py_free(dev_device *d);

/* Serves the UAPI on dir/name.sock (wg show/set). 0 or -errno. */
int dev_py_uapi_listen(dev_device *d, const char *dir, const char *name);
/* UAPI get: *out (free with dev_py_free_text) holds the key=value lines
 * ending in "errno=0\n\n". */
int dev_py_uapi_get(dev_device *d, char **out, size_t *len);
/* UAPI set: the lines after "set=1\n". 0 or -errno (-EINVAL...). */
int dev_py_uapi_set(dev_device *d, const char *text, size_t len);
void dev_py_free_text(char *p);

/* Sends an IP packet into the tunnel: 0, a wg_drop reason (> 0) or -errno. */
int dev_py_write_packet(dev_device *d, const uint8_t *ip, size_t len);
/* n packets stored back to back in buf (lens[i] bytes each), sent in one
 * trip to the loop. reasons[i] gets each one's result (0 or a wg_drop
 * reason). Returns how many were accepted, or -errno. */
int dev_py_write_batch(dev_device *d, const uint8_t *buf, const uint32_t *lens, size_t n, uint8_t *reasons);
/* The next delivered packet: its length, -ETIMEDOUT, -ESHUTDOWN, or
 * -EMSGSIZE (longer than cap: dropped). timeout_ms < 0 waits forever. */
int dev_py_read_packet(dev_device *d, uint8_t *buf, size_t cap, int timeout_ms);

int dev_py_stats(dev_device *d, struct dev_stats *io, struct wg_device_stats *core);
int dev_py_public_key(dev_device *d, uint8_t *out);
int dev_py_listen_port(dev_device *d);
/* Cryptokey routing: 1 and the public key of the peer whose allowed IPs
 * contain addr (WG_AF_INET: 4 bytes, WG_AF_INET6: 16), 0 if none, -errno. */
int dev_py_route(dev_device *d, int family, const uint8_t *addr, uint8_t *peer_public_key);
/* mode WG_LOAD_AUTO / FORCE / NEVER (the cookie mechanism). */
int dev_py_set_under_load(dev_device *d, int mode, uint32_t threshold);
/* Starts a new handshake with the peer now (a forced rekey: new session
 * keys; the old ones still decrypt what is in flight). -ENOENT: no such
 * peer, -ENOKEY: the device has no private key. */
int dev_py_rekey(dev_device *d, const uint8_t *peer_public_key);
/* Moves the device's WireGuard clock ms forward (virtual time on top of
 * the loop's) and runs the core's timers now due: rekey after 120 s,
 * keepalive, handshake retry, key expiry. This device only. */
int dev_py_advance_clock(dev_device *d, uint32_t ms);
/* Appends tshark key-log lines (spec: LOCAL_STATIC_PRIVATE_KEY...) for
 * every handshake the device creates; NULL or "" stops. 0 or -errno. */
int dev_py_set_keylog(dev_device *d, const char *path);

#endif
