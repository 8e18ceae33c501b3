/* libFuzzer: the key files and key texts a relay reads at start-up: derper's
 * mesh key file and allowlist file (csrc/derp/keys.c, read through a real
 * file), node key texts ("nodekey:"/"privkey:" + 64 hex, bare hex), and the
 * JSON scanner (csrc/derp/json.c) over derper's config file shape,
 * {"PrivateKey": "privkey:<64 hex>"}, with each member's string unescaped
 * and integers read. (spanza/keys.py parses the node key file itself with
 * Python's json module; this is the C side.)
 *
 * Input: byte 0 picks the reader (mod 4: mesh key file, allowlist file,
 * JSON config, key text); the rest is the file or text. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <unistd.h>

#include "crypto/crypto.h"
#include "derp/json.h"
#include "derp/keys.h"

#define UNESCAPE_MAX 1024

static int file_fd = -1;
static char file_path[64];

/* The input as the content of a real file (a memfd, reopened by path). */
static void set_file(const uint8_t *data, size_t size)
{
	if (file_fd < 0) {
		file_fd = memfd_create("keyfile", MFD_CLOEXEC);
		if (file_fd < 0)
			abort();
		snprintf(file_path, sizeof(file_path), "/proc/self/fd/%d", file_fd);
	}
	if (ftruncate(file_fd, 0) < 0 || (size && pwrite(file_fd, data, size, 0) != (ssize_t)size))
		abort();
}

static int member(void *arg, const char *key, enum derp_json_type t, const char *val, size_t vlen)
{
	int *found = arg;
	if (strlen(key) >= 256)
		__builtin_trap(); /* names are bounded by the scanner */
	if (t == DERP_JSON_STRING) {
		char text[UNESCAPE_MAX];
		int n = derp_json_unescape(val, vlen, text, sizeof(text));
		if (n >= 0 && (size_t)n != strlen(text) && memchr(text, 0, (size_t)n) == NULL)
			__builtin_trap();
		if (n >= 0 && !strcasecmp(key, "PrivateKey")) {
			uint8_t k[32];
			if (derp_key_from_text(text, (size_t)n, "privkey:", k) == 0)
				(*found)++;
		}
	} else if (t == DERP_JSON_NUMBER) {
		int64_t x;
		(void)derp_json_int(val, vlen, &x);
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	uint8_t mode = data[0] % 4;
	data++;
	size--;
	char err[256];
	switch (mode) {
	case 0: {
		uint8_t key[32];
		set_file(data, size);
		if (derp_mesh_key_load(file_path, key, err, sizeof(err)) < 0 && !err[0])
			__builtin_trap(); /* every failure says why */
		break;
	}
	case 1: {
		uint8_t(*keys)[32] = NULL;
		size_t n = 0;
		set_file(data, size);
		int rc = derp_allowlist_load(file_path, &keys, &n, err, sizeof(err));
		if (rc < 0 && (keys || n || !err[0]))
			__builtin_trap();
		volatile uint8_t x = 0;
		for (size_t i = 0; i < n; i++) /* every key is readable (ASan checks the bounds) */
			x ^= keys[i][31];
		(void)x;
		free(keys);
		break;
	}
	case 2: {
		int found = 0;
		(void)derp_json_object((const char *)data, size, member, &found);
		break;
	}
	default: {
		uint8_t k[32];
		char text[DERP_KEY_TEXT_MAX];
		if (derp_key_from_text((const char *)data, size, "nodekey:", k) == 0 ||
		    spz_hex_decode(k, 32, (const char *)data, size) == 0) {
			/* A key read back must print as the same key. */
			size_t n = derp_key_to_text(text, sizeof(text), "nodekey:", k);
			uint8_t again[32];
			if (!n || derp_key_from_text(text, n, "nodekey:", again) != 0 || memcmp(k, again, 32) != 0)
				__builtin_trap();
		}
		break;
	}
	}
	return 0;
}
