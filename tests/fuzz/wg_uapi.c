/* libFuzzer: UAPI requests (framing, set lines, then a get) against a
 * device that has a key and a peer.
 *
 * Speed: the device's key and peer cost two X25519 per input, and keys in
 * the requests more; they are memoised (x25519_memo.h, wrapped by the link
 * in mk/wg.mk): the same values, computed once. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "wg/wg.h"
#include "x25519_memo.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t seed[] = "uapi";
	wg_tunnel *t = wg_tunnel_new(seed, sizeof(seed));
	if (!t)
		abort();
	wg_device *dev = wg_tunnel_device(t);
	uint8_t key[32], pub[32];
	memset(key, 7, sizeof(key));
	wg_device_set_private_key(dev, 0, key);
	memset(pub, 9, sizeof(pub));
	wg_peer *p = NULL;
	wg_peer_add(dev, pub, &p);
	const char *text = (const char *)data;
	size_t pos = 0;
	for (int i = 0; i < 16 && pos < size; i++) {
		size_t n = wg_uapi_request_len(text + pos, size - pos);
		if (!n)
			n = size - pos; /* an incomplete request: hand it over anyway */
		char *reply = NULL;
		size_t rlen = 0;
		if (wg_uapi_request(dev, (uint64_t)i, text + pos, n, &reply, &rlen) == 0)
			wg_uapi_free(reply);
		pos += n;
	}
	/* Also the set path on the raw bytes. */
	wg_uapi_set(dev, 100, text, size);
	char *out = NULL;
	size_t olen = 0;
	if (wg_uapi_get(dev, 100, &out, &olen) == 0) {
		if (olen < 8 || memcmp(out + olen - 9, "errno=0\n\n", 9) != 0)
			abort();
		wg_uapi_free(out);
	}
	wg_tunnel_free(t);
	return 0;
}
