/* Names of hops and drop reasons, for Python and logs. */
#include "trace/trace_py.h"

static const char *const hop_names[TR_HOP__COUNT] = {
	[TR_HOP_NS_OUT] = "host-out",
	[TR_HOP_WG_ENCRYPT] = "wg-encrypt",
	[TR_HOP_WG_CIPHER_OUT] = "wg-out",
	[TR_HOP_DEV_UDP_TX] = "udp-send",
	[TR_HOP_GW_UDP_IN] = "gw-udp-in",
	[TR_HOP_GW_DERP_OUT] = "gw-derp-out",
	[TR_HOP_DC_QUEUE] = "derp-queued",
	[TR_HOP_DC_TX] = "derp-send",
	[TR_HOP_DS_IN] = "relay-in",
	[TR_HOP_DS_RELAY] = "relay-out",
	[TR_HOP_DC_RX] = "derp-recv",
	[TR_HOP_GW_DERP_IN] = "gw-derp-in",
	[TR_HOP_GW_UDP_OUT] = "gw-udp-out",
	[TR_HOP_DEV_UDP_RX] = "udp-recv",
	[TR_HOP_WG_CIPHER_IN] = "wg-in",
	[TR_HOP_WG_DECRYPT] = "wg-decrypt",
	[TR_HOP_NS_IN] = "host-in",
	[TR_HOP_WG] = "wg",
	[TR_HOP_DEV] = "device",
	[TR_HOP_DS] = "relay",
	[TR_HOP_KEYS] = "keys",
};

static const char *const reason_names[TR_R__LOCAL_COUNT] = {
	[TR_R_NONE] = "none",
	[TR_R_DEV_NO_BIND] = "no_bind",
	[TR_R_DEV_BIND_ERROR] = "bind_error",
	[TR_R_DEV_QUEUE_FULL] = "read_queue_full",
	[TR_R_UDP_TRUNCATED] = "udp_truncated",
	[TR_R_UDP_SEND_FULL] = "udp_socket_full",
	[TR_R_UDP_SEND_ERROR] = "udp_send_error",
	[TR_R_GW_UNKNOWN_KEY] = "unknown_derp_key",
	[TR_R_GW_NO_DESTINATION] = "no_wireguard_address",
	[TR_R_GW_OVERSIZE] = "oversize",
	[TR_R_GW_DERP_SEND] = "derp_send_error",
	[TR_R_DC_RATE_LIMIT] = "derp_rate_limit",
	[TR_R_DC_BUFFER_FULL] = "derp_buffer_full",
	[TR_R_DC_QUEUE_OLDEST] = "derp_queue_full_oldest_dropped",
	[TR_R_DC_TOO_BIG] = "derp_too_big",
	[TR_R_DC_CONN_LOST] = "derp_connection_lost",
	[TR_R_DS_GONE] = "receiver_disconnected",
	[TR_R_DS_QUEUE_HEAD] = "receiver_queue_full_oldest_dropped",
	[TR_R_DS_NO_MEMORY] = "relay_no_memory",
	[TR_R_DS_DUP_CLIENT] = "receiver_duplicate_inactive",
	[TR_R_DS_UNKNOWN_DEST] = "unknown_destination",
	[TR_R_DS_UNKNOWN_DEST_FWD] = "unknown_destination_forwarded",
	[TR_R_DS_WRITE_ERROR] = "relay_write_error",
	[TR_R_NS_MALFORMED] = "malformed_ip",
	[TR_R_NS_NOT_OURS] = "not_addressed_to_host",
	[TR_R_NS_NO_MEMORY] = "host_no_memory",
	[TR_R_NS_OVERSIZE] = "larger_than_mtu",
};

const char *tr_hop_name(int hop)
{
	if (hop <= 0 || hop >= TR_HOP__COUNT || !hop_names[hop])
		return "?";
	return hop_names[hop];
}

const char *tr_reason_name(int reason)
{
	if (reason >= TR_R_WG)
		return "wg"; /* wg_drop_name(reason - TR_R_WG): tracing sits below wg/ */
	if (reason < 0 || reason >= TR_R__LOCAL_COUNT || !reason_names[reason])
		return "?";
	return reason_names[reason];
}
