/* A WireGuard key log for tshark (spec section 10): four lines per
 * handshake this device creates, the PSK line after the ephemeral one.
 * Debugging only: it writes secrets to a file the user asked for. */
#include "device/impl.h"

#include <sodium.h>

static void key_line(FILE *f, const char *label, const uint8_t key[32])
{
	char b64[sodium_base64_ENCODED_LEN(32, sodium_base64_VARIANT_ORIGINAL)];
	sodium_bin2base64(b64, sizeof(b64), key, 32, sodium_base64_VARIANT_ORIGINAL);
	fprintf(f, "%s = %s\n", label, b64);
	sodium_memzero(b64, sizeof(b64));
}

void dev_keylog_write(dev_device *d, const struct wg_handshake_keys *keys)
{
	FILE *f = d->keylog;
	key_line(f, "LOCAL_STATIC_PRIVATE_KEY", keys->local_static_private);
	key_line(f, "REMOTE_STATIC_PUBLIC_KEY", keys->remote_static_public);
	key_line(f, "LOCAL_EPHEMERAL_PRIVATE_KEY", keys->local_ephemeral_private);
	key_line(f, "PRESHARED_KEY", keys->preshared_key);
	fflush(f); /* tshark re-reads the file while dissecting */
}
