/* derp keys: text forms of node keys, derper's mesh key and allowlist files
 * (spec §4, §14). The node key file is read and written in Python
 * (spanza/keys.py). */
#ifndef SPANZA_DERP_KEYS_H
#define SPANZA_DERP_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DERP_KEY_TEXT_MAX 80 /* "privkey:" + 64 hex + NUL fits */

/* "<prefix><64 hex>" (e.g. prefix "nodekey:"), exactly; 0 or -EINVAL. Bare
 * hex is spz_hex_decode (crypto/crypto.h). */
int derp_key_from_text(const char *s, size_t len, const char *prefix, uint8_t out[32]);
/* prefix + 64 lowercase hex + NUL into out[cap]; returns the length or 0. */
size_t derp_key_to_text(char *out, size_t cap, const char *prefix, const uint8_t key[32]);
/* Debug short form "[hSDwC]" (first 5 chars of std base64) into out[8]. */
void derp_key_short(char out[8], const uint8_t key[32]);

/* A mesh key file: 64 hex chars, surrounding whitespace trimmed. 0, -EINVAL, -errno. */
int derp_mesh_key_load(const char *path, uint8_t key[32], char *err, size_t errlen);

/* An allowlist file: one node key per line ("nodekey:<hex>" or bare hex),
 * '#' comments and blank lines ignored. *keys is a malloc'd array of
 * *count keys (free it). -EINVAL names the first bad line in err. */
int derp_allowlist_load(const char *path, uint8_t (**keys)[32], size_t *count, char *err, size_t errlen);

#endif
