/* derp client internals shared by client.c (state machine, API),
 * client_io.c (sockets, TLS, buffers), client_queue.c (send queue) and
 * client_resolve.c (getaddrinfo off the loop). Not a public header. */
#ifndef SPANZA_DERP_CLIENT_INT_H
#define SPANZA_DERP_CLIENT_INT_H

#include <netinet/in.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "derp/client/client.h"
#include "derp/client_proto.h"
#include "derp/tls.h"

#define DERP_CLIENT_MAX_ADDRS 8
#define DERP_CLIENT_MAX_NODES 8 /* URLs of one region's nodes, tried in turn */
#define DERP_CLIENT_MAX_PINGS 16
#define DERP_CLIENT_RBUF (256 * 1024)
#define DERP_CLIENT_READ_BUDGET 8 /* rbuf fills per wake-up before yielding to the loop */
/* Refusals in a row (closed right after our ClientInfo) before the client
 * stops retrying: two, so a server restart at that moment is not taken
 * for a refusal. */
#define DERP_CLIENT_REFUSALS_STOP 2

/* ---- resolver (client_resolve.c) ---- */
struct derp_resolve;
/* Starts getaddrinfo(host, port) on a detached helper thread; the
 * returned object's fd becomes readable when it is done. NULL + *rc. */
struct derp_resolve *derp_resolve_start(const char *host, uint16_t port, int *rc);
int derp_resolve_fd(const struct derp_resolve *r);
/* Results (after the fd is readable): count, or -EHOSTUNREACH with a
 * message in err. */
int derp_resolve_result(struct derp_resolve *r, struct sockaddr_storage *out, socklen_t *lens, int max, char *err,
			size_t errlen);
/* Drops the caller's reference (also cancels: the thread frees on exit). */
void derp_resolve_release(struct derp_resolve *r);

/* ---- send queue (client_queue.c) ---- */
struct derp_qent {
	struct derp_qent *next;
	uint8_t dst[32];
	uint32_t len;
	uint8_t data[];
};

struct derp_ping {
	bool used;
	uint8_t data[8];
	uint64_t sent_ns;
};

struct derp_client {
	rt_t *rt;
	struct derp_url url; /* the node in use: nodes[node] */
	struct derp_url nodes[DERP_CLIENT_MAX_NODES];
	int nnodes, node;
	struct derp_client_opts o; /* defaults applied; string fields NULL (copies below) */
	char *server_name;
	bool has_pin;
	uint8_t pin[32];
	struct derp_client_ops ops;
	void *arg;
	uint8_t priv[32], pub[32];
	SSL_CTX *ssl_ctx;

	int state;    /* DERP_CLIENT_* */
	uint64_t gen; /* bumped on every connection teardown */
	bool closing; /* derp_client_free called */
	int busy;     /* loop entry points in progress */

	/* the current attempt / connection */
	struct derp_resolve *res;
	struct sockaddr_storage addrs[DERP_CLIENT_MAX_ADDRS];
	socklen_t alens[DERP_CLIENT_MAX_ADDRS];
	int naddr, ai;
	uint64_t attempt_deadline, dial_deadline; /* ms */
	struct derp_io io;                        /* io.fd < 0: none */
	uint32_t events;                          /* epoll mask registered for io.fd (0: not registered) */
	bool wblocked;                            /* the last write hit EAGAIN; waiting for the socket */
	struct derp_cproto *cp;
	struct derp_cproto *cp_zombie; /* torn down while feeding; freed after */
	bool in_input;
	uint64_t last_rx_ms, last_idle_ping_ms;
	struct derp_ping pings[DERP_CLIENT_MAX_PINGS];

	/* write buffer: bytes wbuf[whead, whead + wlen); wframe = offset of the
	 * first frame boundary at or after whead (to count lost packets) */
	uint8_t *wbuf;
	size_t wcap, whead, wlen, wframe;
	bool wpartial_send; /* the frame cut by whead is a SendPacket */
	uint8_t *rbuf;

	/* queue of sends waiting for a connection or for room */
	struct derp_qent *qhead, *qtail;
	uint32_t qlen;
	bool congested_notify; /* was congested since the last on_writable: call it once drained */

	/* deferred I/O on the next loop iteration */
	rt_timer_t *t_main, *t_io;
	bool flush_pending, read_pending;

	bool has_preferred, preferred;
	uint32_t failures;
	bool lost_after_connect;

	/* server's send token bucket (ServerInfo), 0 rate = none */
	int64_t tb_rate, tb_burst;
	double tb_tokens;
	uint64_t tb_last_ns;

	struct derp_client_stats st;
	uint32_t refused_in_row;
	int last_errno; /* cause of last_error (stats.last_errno) */
	char last_error[200];
	struct imp *imp[2]; /* IMP_OUT: sends before framing, IMP_IN: received packets */
};

/* client_io.c */
void derp_cl_dial_next(struct derp_client *c);
void derp_cl_on_io(rt_t *rt, int fd, uint32_t events, void *arg);
void derp_cl_io_deferred(struct derp_client *c);
int derp_cl_wbuf_reserve(struct derp_client *c, size_t n);
int derp_cl_write(struct derp_client *c, const uint8_t *buf, size_t len); /* control frames */
void derp_cl_schedule_flush(struct derp_client *c);
void derp_cl_close_io(struct derp_client *c); /* closes fd, counts lost sends, empties wbuf */
void derp_cl_set_interest(struct derp_client *c);

/* client.c */
#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
void derp_cl_fail(struct derp_client *c, const char *fmt, ...);
/* derp_cl_fail with the errno-style cause (stats.last_errno): EACCES is a
 * refusal by the server, which stops retrying when it repeats. */
#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
void derp_cl_fail_err(struct derp_client *c, int err, const char *fmt, ...);
void derp_cl_start_upgrade(struct derp_client *c);
/* Loop entry points bracket their work with c->busy++ ... derp_cl_leave(c),
 * which finishes a derp_client_free that a callback asked for meanwhile. */
void derp_cl_leave(struct derp_client *c);
void derp_cl_feed(struct derp_client *c, const uint8_t *buf, size_t len);
bool derp_cl_encode_send(struct derp_client *c, const uint8_t dst[32], const uint8_t *data, size_t len);
/* Every path that grows the write buffer or the queue calls this: whoever
 * saw derp_client_congested() true gets on_writable once it turns false. */
void derp_cl_note_congestion(struct derp_client *c);
/* Calls on_writable if the client was congested and no longer is. */
void derp_cl_notify_writable(struct derp_client *c);

/* client_queue.c */
void derp_cl_queue_push(struct derp_client *c, const uint8_t dst[32], const uint8_t *data, size_t len);
void derp_cl_queue_drain(struct derp_client *c);
void derp_cl_queue_clear(struct derp_client *c);

#endif
