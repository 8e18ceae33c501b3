/* Node key text forms and derper's mesh key and allowlist files. */
#include "derp/keys.h"
#include "crypto/crypto.h"
#include "derp/frame.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define KEYFILE_MAX 65536

int derp_key_from_text(const char *s, size_t len, const char *prefix, uint8_t out[32])
{
	size_t pn = strlen(prefix);
	if (len < pn || memcmp(s, prefix, pn) != 0)
		return -EINVAL;
	return spz_hex_decode(out, 32, s + pn, len - pn);
}

size_t derp_key_to_text(char *out, size_t cap, const char *prefix, const uint8_t key[32])
{
	char hex[65];
	spz_hex_encode(hex, key, 32);
	int n = snprintf(out, cap, "%s%s", prefix, hex);
	sodium_memzero(hex, sizeof(hex));
	return n < 0 || (size_t)n >= cap ? 0 : (size_t)n;
}

void derp_key_short(char out[8], const uint8_t key[32])
{
	char b64[48];
	sodium_bin2base64(b64, sizeof(b64), key, 32, sodium_base64_VARIANT_ORIGINAL);
	out[0] = '[';
	memcpy(out + 1, b64, 5);
	out[6] = ']';
	out[7] = 0;
}

/* Reads a small file into a NUL-terminated malloc'd buffer. */
static int read_small(const char *path, char **out, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	char *buf = malloc(KEYFILE_MAX + 1);
	if (!buf) {
		close(fd);
		return -ENOMEM;
	}
	size_t n = 0;
	for (;;) {
		ssize_t r = read(fd, buf + n, KEYFILE_MAX - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			int e = errno;
			close(fd);
			free(buf);
			return -e;
		}
		if (r == 0)
			break;
		n += (size_t)r;
		if (n == KEYFILE_MAX) {
			close(fd);
			sodium_memzero(buf, n);
			free(buf);
			return -EFBIG;
		}
	}
	close(fd);
	buf[n] = 0;
	*out = buf;
	*len = n;
	return 0;
}

static void free_secret(char *buf, size_t len)
{
	sodium_memzero(buf, len);
	free(buf);
}

static void trim(const char **s, size_t *n)
{
	while (*n && strchr(" \t\r\n\v\f", **s)) {
		(*s)++;
		(*n)--;
	}
	while (*n && strchr(" \t\r\n\v\f", (*s)[*n - 1]))
		(*n)--;
}

int derp_mesh_key_load(const char *path, uint8_t key[32], char *err, size_t errlen)
{
	char *buf = NULL;
	size_t len = 0;
	int rc = read_small(path, &buf, &len);
	if (rc < 0) {
		snprintf(err, errlen, "cannot read mesh key %s: %s", path, strerror(-rc));
		return rc;
	}
	const char *s = buf;
	size_t n = len;
	trim(&s, &n);
	rc = spz_hex_decode(key, 32, s, n);
	free_secret(buf, len);
	if (rc < 0) {
		sodium_memzero(key, 32);
		snprintf(err, errlen, "mesh key %s: want 64 hex digits", path);
	}
	return rc;
}

int derp_allowlist_load(const char *path, uint8_t (**keys)[32], size_t *count, char *err, size_t errlen)
{
	FILE *f = fopen(path, "re");
	*keys = NULL;
	*count = 0;
	if (!f) {
		int e = errno;
		snprintf(err, errlen, "cannot read allowlist %s: %s", path, strerror(e));
		return -e;
	}
	char line[512];
	size_t cap = 0, lineno = 0;
	int rc = 0;
	while (fgets(line, sizeof(line), f)) {
		lineno++;
		const char *s = line;
		size_t n = strlen(line);
		char *hash = memchr(line, '#', n);
		if (hash)
			n = (size_t)(hash - line);
		trim(&s, &n);
		if (!n)
			continue;
		uint8_t k[32];
		if (derp_key_from_text(s, n, "nodekey:", k) < 0 && spz_hex_decode(k, 32, s, n) < 0) {
			snprintf(err, errlen, "allowlist %s line %zu: want nodekey:<64 hex> or 64 hex", path, lineno);
			rc = -EINVAL;
			break;
		}
		if (*count == cap) {
			size_t ncap = cap ? cap * 2 : 16;
			uint8_t(*nk)[32] = realloc(*keys, ncap * sizeof(**keys));
			if (!nk) {
				rc = -ENOMEM;
				snprintf(err, errlen, "allowlist %s: out of memory", path);
				break;
			}
			*keys = nk;
			cap = ncap;
		}
		memcpy((*keys)[(*count)++], k, 32);
	}
	fclose(f);
	if (rc < 0) {
		free(*keys);
		*keys = NULL;
		*count = 0;
	}
	return rc;
}
