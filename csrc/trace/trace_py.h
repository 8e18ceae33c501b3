/* cffi: packet-flow tracing as Python sees it (spanza/trace.py).
 *
 * Tap points at every hop of the packet path write records into a bounded
 * ring per producing thread (one per runtime loop); Python drains them.
 * Off by default: a tap then costs one predictable branch. Every function
 * here is safe to call from any thread. */
#ifndef SPANZA_TR_TRACE_PY_H
#define SPANZA_TR_TRACE_PY_H

#include <stddef.h>
#include <stdint.h>

/* Hops (tap points), in path order. */
enum tr_hop {
	TR_HOP_NS_OUT = 1,        /* lwIP host -> its link (plaintext IP) */
	TR_HOP_WG_ENCRYPT = 2,    /* plaintext being encrypted (index, counter) */
	TR_HOP_WG_CIPHER_OUT = 3, /* a WireGuard datagram leaves the core */
	TR_HOP_DEV_UDP_TX = 4,    /* the device's UDP socket sends it */
	TR_HOP_GW_UDP_IN = 5,     /* a gateway reads it from its UDP socket */
	TR_HOP_GW_DERP_OUT = 6,   /* ... and hands it to its DERP client */
	TR_HOP_DC_QUEUE = 7,      /* a DERP client queues it (no connection/room) */
	TR_HOP_DC_TX = 8,         /* a DERP client writes a SendPacket frame */
	TR_HOP_DS_IN = 9,         /* the DERP server reads a frame */
	TR_HOP_DS_RELAY = 10,     /* ... and queues a RecvPacket for the receiver */
	TR_HOP_DC_RX = 11,        /* a DERP client receives a RecvPacket */
	TR_HOP_GW_DERP_IN = 12,   /* a gateway gets it from DERP */
	TR_HOP_GW_UDP_OUT = 13,   /* ... and sends it to its WireGuard over UDP */
	TR_HOP_DEV_UDP_RX = 14,   /* the device's UDP socket receives it */
	TR_HOP_WG_CIPHER_IN = 15, /* the datagram enters the core */
	TR_HOP_WG_DECRYPT = 16,   /* its plaintext after decryption */
	TR_HOP_NS_IN = 17,        /* the lwIP host receives the IP packet */
	TR_HOP_WG = 18,           /* the WireGuard core (drops) */
	TR_HOP_DEV = 19,          /* the device's I/O layer (drops) */
	TR_HOP_DS = 20,           /* the DERP server (drops) */
	TR_HOP_KEYS = 21,         /* a handshake's keys (key log, 4 x 32 bytes) */
	TR_HOP__COUNT = 22,
};

/* Bit in tr_config.hops: record drops (whatever their hop). */
#define TR_HOPS_DROPS 63

/* Drop reasons. A WireGuard core drop is TR_R_WG + its wg_drop reason. */
enum tr_reason {
	TR_R_NONE = 0,
	TR_R_DEV_NO_BIND = 1,       /* the endpoint's family has no bind */
	TR_R_DEV_BIND_ERROR = 2,    /* the bind's send failed */
	TR_R_DEV_QUEUE_FULL = 3,    /* read queue full */
	TR_R_UDP_TRUNCATED = 4,     /* larger than the receive buffer */
	TR_R_UDP_SEND_FULL = 5,     /* socket buffer full */
	TR_R_UDP_SEND_ERROR = 6,    /* sendto failed (unreachable...) */
	TR_R_GW_UNKNOWN_KEY = 7,    /* from a DERP key that is no peer */
	TR_R_GW_NO_DESTINATION = 8, /* no local WireGuard address known yet */
	TR_R_GW_OVERSIZE = 9,
	TR_R_GW_DERP_SEND = 10,    /* the DERP client refused it */
	TR_R_DC_RATE_LIMIT = 11,   /* the server's send rate limit */
	TR_R_DC_BUFFER_FULL = 12,  /* write buffer full */
	TR_R_DC_QUEUE_OLDEST = 13, /* queue full: the oldest was dropped */
	TR_R_DC_TOO_BIG = 14,
	TR_R_DC_CONN_LOST = 15,  /* buffered when the connection was lost (count) */
	TR_R_DS_GONE = 16,       /* receiver disconnected */
	TR_R_DS_QUEUE_HEAD = 17, /* receiver's queue full: its oldest dropped */
	TR_R_DS_NO_MEMORY = 18,
	TR_R_DS_DUP_CLIENT = 19,   /* receiver's key is connected twice, inactive */
	TR_R_DS_UNKNOWN_DEST = 20, /* no client with that key */
	TR_R_DS_UNKNOWN_DEST_FWD = 21,
	TR_R_DS_WRITE_ERROR = 22, /* lost with a failed connection (count) */
	TR_R_NS_MALFORMED = 23,
	TR_R_NS_NOT_OURS = 24, /* not addressed to the host */
	TR_R_NS_NO_MEMORY = 25,
	TR_R_NS_OVERSIZE = 26, /* larger than the host's MTU */
	TR_R__LOCAL_COUNT = 27,
	TR_R_WG = 256,
};

#define TR_MAX_OBJS 32
#define TR_MAX_PEERS 16
#define TR_MAX_PATTERN 16
#define TR_MAX_SNAPLEN 65600

struct tr_config {
	uint64_t hops;       /* bit per TR_HOP_*, bit TR_HOPS_DROPS; 0 = all */
	uint32_t snaplen;    /* bytes kept per record (<= TR_MAX_SNAPLEN) */
	uint32_t ring_bytes; /* ring size per producing thread */
	uint32_t nobjs;      /* 0 = every object */
	uint64_t objs[TR_MAX_OBJS];
	uint32_t npeers; /* 0 = every peer (records without a peer pass) */
	uint64_t peers[TR_MAX_PEERS];
	/* IP match, on hops carrying plaintext IP only: af 4/6 (0 = any
	 * address), proto (0 = any), port (either side; 0 = any) */
	uint8_t ip_af;
	uint8_t ip_proto;
	uint16_t ip_port;
	uint8_t ip_addr[16];
	/* byte pattern on the recorded data: (data[off+i] & mask[i]) == val[i] */
	uint16_t pat_off;
	uint8_t pat_len;
	uint8_t pat_val[TR_MAX_PATTERN];
	uint8_t pat_mask[TR_MAX_PATTERN];
	uint8_t keys; /* record handshake keys (for decryption) */
};

/* One record as tr_py_drain copies it: this header, then caplen bytes,
 * padded to 8. */
struct tr_rec {
	uint32_t size; /* header + data + padding */
	uint16_t hop;
	uint16_t reason;
	uint64_t seq;     /* unique; in order within a thread (ring id << 40 | count) */
	uint64_t t_ns;    /* CLOCK_MONOTONIC */
	uint64_t obj;     /* the object (its C pointer, or a DERP client's key id) */
	uint64_t peer;    /* the peer's key id (first 8 bytes, little endian), 0 none */
	uint64_t ref;     /* drops: seq of the record of the packet dropped, 0 none */
	uint64_t counter; /* WireGuard counter (WG_ENCRYPT/DECRYPT); lost count */
	uint32_t index;   /* WireGuard receiver index (WG_ENCRYPT/DECRYPT) */
	uint32_t len;     /* original length */
	uint32_t caplen;
	uint16_t port;  /* remote UDP port (UDP hops), host order */
	uint16_t lport; /* local UDP port */
	uint8_t af;     /* 4, 6, or 0 (no address) */
	uint8_t pad[7];
	uint8_t addr[16]; /* remote address (UDP hops) */
};

struct tr_stats {
	uint64_t records;    /* kept */
	uint64_t overflow;   /* could not be kept: the ring was full */
	uint64_t rings;      /* producing threads */
	uint64_t ring_bytes; /* memory in rings now */
	uint32_t enabled;
};

/* Starts (or reconfigures) tracing. The rings' earlier contents are
 * discarded when `discard`. 0 or -EINVAL (bad snaplen/ring size). */
int tr_py_start(const struct tr_config *cfg, int discard);
void tr_py_stop(void);
/* Copies whole records (struct tr_rec + data) into buf: bytes used;
 * *records gets how many. */
size_t tr_py_drain(uint8_t *buf, size_t cap, size_t *records);
void tr_py_stats(struct tr_stats *out);
/* The monotonic and wall clocks read back to back (ns). */
void tr_py_clocks(uint64_t *mono, uint64_t *wall);
uint64_t tr_key_id(const uint8_t *key);
const char *tr_hop_name(int hop);
const char *tr_reason_name(int reason);
/* Records a test packet from the calling thread (tests of the ring). */
void tr_py_inject(int hop, uint64_t obj, const uint8_t *data, size_t len);

#endif
