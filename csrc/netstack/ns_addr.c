/* Addresses between Python/C (struct ns_addr), lwIP (ip_addr_t) and the
 * message header of listener and UDP sockets; small fd helpers. */
#include "ns.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lwip/err.h"

/* Socketpair buffers: big enough to keep a bulk transfer streaming without
 * a wake-up per segment; the kernel caps it at net.core.wmem_max. */
#define NS_SOCKBUF (1024 * 1024)

int ns_addr_to_ip(const struct ns_addr *a, ip_addr_t *out)
{
	if (a->family == 4) {
		ip_addr_set_zero_ip4(out);
		memcpy(&ip_2_ip4(out)->addr, a->ip, 4);
		return 0;
	}
	if (a->family == 6) {
		ip_addr_set_zero_ip6(out);
		memcpy(ip_2_ip6(out)->addr, a->ip, 16);
		return 0;
	}
	return -EAFNOSUPPORT;
}

void ns_addr_from_ip(const ip_addr_t *ip, uint16_t port, struct ns_addr *out)
{
	memset(out, 0, sizeof(*out));
	out->port = port;
	if (IP_IS_V6(ip)) {
		out->family = 6;
		memcpy(out->ip, ip_2_ip6(ip)->addr, 16);
	} else {
		out->family = 4;
		memcpy(out->ip, &ip_2_ip4(ip)->addr, 4);
	}
}

void ns_addr_hdr_put(uint8_t hdr[NS_ADDR_HDR], const ip_addr_t *ip, uint16_t port)
{
	memset(hdr, 0, NS_ADDR_HDR);
	hdr[2] = (uint8_t)(port >> 8);
	hdr[3] = (uint8_t)port;
	if (IP_IS_V6(ip)) {
		hdr[0] = 6;
		memcpy(hdr + 4, ip_2_ip6(ip)->addr, 16);
	} else {
		hdr[0] = 4;
		memcpy(hdr + 4, &ip_2_ip4(ip)->addr, 4);
	}
}

int ns_addr_hdr_get(const uint8_t hdr[NS_ADDR_HDR], ip_addr_t *ip, uint16_t *port)
{
	struct ns_addr a = {.family = hdr[0]};
	memcpy(a.ip, hdr + 4, 16);
	*port = (uint16_t)(hdr[2] << 8 | hdr[3]);
	return ns_addr_to_ip(&a, ip);
}

int ns_err_to_errno(err_t e)
{
	switch (e) {
	case ERR_OK: return 0;
	case ERR_MEM:
	case ERR_BUF: return -ENOMEM;
	case ERR_TIMEOUT: return -ETIMEDOUT;
	case ERR_RTE: return -EHOSTUNREACH;
	case ERR_INPROGRESS: return -EINPROGRESS;
	case ERR_VAL:
	case ERR_ARG: return -EINVAL;
	case ERR_USE: return -EADDRINUSE;
	case ERR_ALREADY: return -EALREADY;
	case ERR_ISCONN: return -EISCONN;
	case ERR_CONN: return -ENOTCONN;
	case ERR_ABRT: return -ECONNABORTED;
	case ERR_RST: return -ECONNRESET;
	case ERR_CLSD: return -EPIPE;
	default: return -EIO;
	}
}

void ns_set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	if (fl >= 0)
		fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

int ns_socketpair(int type, int *ours, int *theirs)
{
	int sv[2];
	if (socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, sv) < 0)
		return -errno;
	ns_set_nonblock(sv[0]);
	int sz = NS_SOCKBUF;
	setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
	setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
	*ours = sv[0];
	*theirs = sv[1];
	return 0;
}

int ns_pair_open(ns_host_t *h, int *ours, int *theirs, rt_fn open_fn, void *arg, const int *open_rc)
{
	int rc = ns_socketpair(SOCK_SEQPACKET, ours, theirs);
	if (rc < 0)
		return rc;
	int fd = *ours; /* a failed open sets *ours to -1 */
	rc = rt_call(h->rt, open_fn, arg);
	if (rc < 0 || *open_rc < 0) {
		close(fd);
		close(*theirs);
		return rc < 0 ? rc : *open_rc;
	}
	return 0;
}
