/* libFuzzer: the HTTP request and response head parsers, whole and in
 * growing prefixes (as bytes arrive), and the builders' round trip. */
#include "derp/http.h"

#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct derp_http_req req;
	struct derp_http_resp resp;
	int r1 = derp_http_parse_request(data, size, &req);
	if (r1 == 1 && (req.header_len == 0 || req.header_len > size))
		__builtin_trap();
	int r2 = derp_http_parse_response(data, size, &resp);
	if (r2 == 1 && (resp.header_len == 0 || resp.header_len > size))
		__builtin_trap();
	/* A complete head stays complete (and the same length) with more bytes
	 * after it: prefixes must not claim completion earlier. */
	size_t step = size / 7 + 1;
	for (size_t n = 0; n < size; n += step) {
		int r = derp_http_parse_request(data, n, &req);
		if (r == 1 && r1 == 1 && req.header_len > n)
			__builtin_trap();
	}
	/* The builders produce heads the parsers accept. */
	char host[64], buf[1024];
	size_t hn = size < sizeof(host) - 1 ? size : sizeof(host) - 1;
	memcpy(host, data, hn);
	host[hn] = 0;
	size_t n = derp_http_upgrade_request(buf, sizeof(buf), host, size & 1, (size & 2) ? host : NULL);
	if (n && derp_http_parse_request((const uint8_t *)buf, n, &req) != 1)
		__builtin_trap();
	return 0;
}
