/* derp json: a small, strict JSON scanner for the handshake info blobs and
 * derper's config file. Reports each member of a top-level object; nested
 * values are validated and skipped. No allocation. */
#ifndef SPANZA_DERP_JSON_H
#define SPANZA_DERP_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum derp_json_type {
	DERP_JSON_STRING,
	DERP_JSON_NUMBER,
	DERP_JSON_TRUE,
	DERP_JSON_FALSE,
	DERP_JSON_NULL,
	DERP_JSON_OBJECT,
	DERP_JSON_ARRAY,
};

/* key: decoded member name (NUL-terminated, truncated names never match);
 * val/vlen: the raw value text (for strings: between the quotes, escapes
 * not decoded). Return non-zero to stop with that value. */
typedef int (*derp_json_cb)(void *arg, const char *key, enum derp_json_type t, const char *val, size_t vlen);

/* Scans one JSON object (surrounding whitespace allowed). 0, the callback's
 * non-zero return, or -EINVAL for malformed JSON / not an object. */
int derp_json_object(const char *s, size_t len, derp_json_cb cb, void *arg);

/* Decodes a raw string value (as given to the callback) into out[cap],
 * NUL-terminated. Returns its length, or -EINVAL (bad escape, too long). */
int derp_json_unescape(const char *val, size_t vlen, char *out, size_t cap);

/* Integer value: -EINVAL unless the number is an integer that fits. */
int derp_json_int(const char *val, size_t vlen, int64_t *out);

/* Writes s as a JSON string (with quotes) into out[cap]; returns the length
 * or 0 if it does not fit. */
size_t derp_json_quote(char *out, size_t cap, const char *s);

#endif
