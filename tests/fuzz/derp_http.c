/* libFuzzer: the HTTP request and response head parsers, whole and in
 * growing prefixes (as bytes arrive), the search for a head's end piece by
 * piece (as the server does it), and the builders' round trip. */
#include "derp/http.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>

/* Searching piece by piece finds the end the whole-buffer parse finds (or
 * none when it says incomplete or too long), and looks at each byte about
 * once: the new bytes of a piece and two before them. */
static void check_scan(const uint8_t *data, size_t size, int whole, size_t header_len)
{
	size_t lim = size < DERP_HTTP_MAX_HEAD ? size : DERP_HTTP_MAX_HEAD;
	size_t piece = size ? data[size - 1] % 16 + 1 : 1, from = 0, end = 0, pieces = 0;
	uint64_t examined = 0;
	for (size_t n = 0; n < lim && !end; pieces++) {
		n = lim - n > piece ? n + piece : lim;
		end = derp_http_head_scan(data, n, &from, &examined);
	}
	if (examined > lim + 2 * pieces)
		__builtin_trap();
	if (whole == 1 ? end != header_len : (whole == 0 || whole == -EMSGSIZE) && end != 0)
		__builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct derp_http_req req;
	struct derp_http_resp resp;
	int r1 = derp_http_parse_request(data, size, &req);
	if (r1 == 1 && (req.header_len == 0 || req.header_len > size))
		__builtin_trap();
	check_scan(data, size, r1, req.header_len);
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
