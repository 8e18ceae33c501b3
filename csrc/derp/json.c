/* A small strict JSON scanner (RFC 8259) with a nesting bound. */
#include "derp/json.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define JSON_MAX_DEPTH 32

struct scan {
	const char *s;
	size_t len;
	size_t i;
};

static void skip_ws(struct scan *sc)
{
	while (sc->i < sc->len) {
		char c = sc->s[sc->i];
		if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
			return;
		sc->i++;
	}
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* At an opening quote: sets start and n to the raw contents, moves past the
 * closing quote. */
static int scan_string(struct scan *sc, const char **start, size_t *n)
{
	if (sc->i >= sc->len || sc->s[sc->i] != '"')
		return -EINVAL;
	size_t b = ++sc->i;
	while (sc->i < sc->len) {
		unsigned char c = (unsigned char)sc->s[sc->i];
		if (c == '"') {
			*start = sc->s + b;
			*n = sc->i - b;
			sc->i++;
			return 0;
		}
		if (c < 0x20)
			return -EINVAL;
		if (c == '\\') {
			if (sc->i + 1 >= sc->len)
				return -EINVAL;
			char e = sc->s[sc->i + 1];
			if (e == 'u') {
				if (sc->i + 6 > sc->len)
					return -EINVAL;
				for (int k = 2; k < 6; k++)
					if (hexval(sc->s[sc->i + k]) < 0)
						return -EINVAL;
				sc->i += 6;
				continue;
			}
			if (!strchr("\"\\/bfnrt", e) || e == 0)
				return -EINVAL;
			sc->i += 2;
			continue;
		}
		sc->i++;
	}
	return -EINVAL;
}

/* Skips a run of decimal digits; false if there was none. */
static bool skip_digits(struct scan *sc)
{
	size_t from = sc->i;
	while (sc->i < sc->len && sc->s[sc->i] >= '0' && sc->s[sc->i] <= '9')
		sc->i++;
	return sc->i > from;
}

static int scan_number(struct scan *sc)
{
	size_t b = sc->i;
	if (sc->i < sc->len && sc->s[sc->i] == '-')
		sc->i++;
	if (sc->i >= sc->len)
		return -EINVAL;
	if (sc->s[sc->i] == '0') {
		sc->i++;
	} else if (sc->s[sc->i] >= '1' && sc->s[sc->i] <= '9') {
		skip_digits(sc);
	} else {
		return -EINVAL;
	}
	if (sc->i < sc->len && sc->s[sc->i] == '.') {
		sc->i++;
		if (!skip_digits(sc))
			return -EINVAL;
	}
	if (sc->i < sc->len && (sc->s[sc->i] == 'e' || sc->s[sc->i] == 'E')) {
		sc->i++;
		if (sc->i < sc->len && (sc->s[sc->i] == '+' || sc->s[sc->i] == '-'))
			sc->i++;
		if (!skip_digits(sc))
			return -EINVAL;
	}
	return sc->i > b ? 0 : -EINVAL;
}

static int scan_lit(struct scan *sc, const char *lit)
{
	size_t n = strlen(lit);
	if (sc->len - sc->i < n || memcmp(sc->s + sc->i, lit, n) != 0)
		return -EINVAL;
	sc->i += n;
	return 0;
}

static int scan_value(struct scan *sc, int depth, enum derp_json_type *t, const char **v, size_t *vn);

static int scan_container(struct scan *sc, int depth, bool obj)
{
	if (depth > JSON_MAX_DEPTH)
		return -EINVAL;
	sc->i++; /* past { or [ */
	skip_ws(sc);
	char close = obj ? '}' : ']';
	if (sc->i < sc->len && sc->s[sc->i] == close) {
		sc->i++;
		return 0;
	}
	for (;;) {
		enum derp_json_type t;
		const char *v;
		size_t vn;
		skip_ws(sc);
		if (obj) {
			if (scan_string(sc, &v, &vn) < 0)
				return -EINVAL;
			skip_ws(sc);
			if (sc->i >= sc->len || sc->s[sc->i] != ':')
				return -EINVAL;
			sc->i++;
			skip_ws(sc);
		}
		if (scan_value(sc, depth + 1, &t, &v, &vn) < 0)
			return -EINVAL;
		skip_ws(sc);
		if (sc->i >= sc->len)
			return -EINVAL;
		if (sc->s[sc->i] == ',') {
			sc->i++;
			continue;
		}
		if (sc->s[sc->i] == close) {
			sc->i++;
			return 0;
		}
		return -EINVAL;
	}
}

static int scan_value(struct scan *sc, int depth, enum derp_json_type *t, const char **v, size_t *vn)
{
	if (sc->i >= sc->len)
		return -EINVAL;
	size_t b = sc->i;
	int rc;
	switch (sc->s[sc->i]) {
	case '"': *t = DERP_JSON_STRING; return scan_string(sc, v, vn);
	case '{':
		*t = DERP_JSON_OBJECT;
		rc = scan_container(sc, depth, true);
		break;
	case '[':
		*t = DERP_JSON_ARRAY;
		rc = scan_container(sc, depth, false);
		break;
	case 't':
		*t = DERP_JSON_TRUE;
		rc = scan_lit(sc, "true");
		break;
	case 'f':
		*t = DERP_JSON_FALSE;
		rc = scan_lit(sc, "false");
		break;
	case 'n':
		*t = DERP_JSON_NULL;
		rc = scan_lit(sc, "null");
		break;
	default:
		*t = DERP_JSON_NUMBER;
		rc = scan_number(sc);
		break;
	}
	*v = sc->s + b;
	*vn = sc->i - b;
	return rc;
}

int derp_json_unescape(const char *val, size_t vlen, char *out, size_t cap)
{
	size_t o = 0;
	if (cap == 0)
		return -EINVAL;
	for (size_t i = 0; i < vlen;) {
		char c = val[i];
		uint32_t cp;
		if (c != '\\') {
			if (o + 1 >= cap)
				return -EINVAL;
			out[o++] = c;
			i++;
			continue;
		}
		if (i + 1 >= vlen)
			return -EINVAL;
		char e = val[i + 1];
		i += 2;
		switch (e) {
		case '"': cp = '"'; break;
		case '\\': cp = '\\'; break;
		case '/': cp = '/'; break;
		case 'b': cp = '\b'; break;
		case 'f': cp = '\f'; break;
		case 'n': cp = '\n'; break;
		case 'r': cp = '\r'; break;
		case 't': cp = '\t'; break;
		case 'u':
			if (i + 4 > vlen)
				return -EINVAL;
			cp = 0;
			for (int k = 0; k < 4; k++) {
				int h = hexval(val[i + k]);
				if (h < 0)
					return -EINVAL;
				cp = cp << 4 | (uint32_t)h;
			}
			i += 4;
			/* Surrogates are not needed for our ASCII fields: replace. */
			if (cp >= 0xd800 && cp <= 0xdfff)
				cp = 0xfffd;
			break;
		default: return -EINVAL;
		}
		char tmp[4];
		size_t n;
		if (cp < 0x80) {
			tmp[0] = (char)cp;
			n = 1;
		} else if (cp < 0x800) {
			tmp[0] = (char)(0xc0 | cp >> 6);
			tmp[1] = (char)(0x80 | (cp & 0x3f));
			n = 2;
		} else {
			tmp[0] = (char)(0xe0 | cp >> 12);
			tmp[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
			tmp[2] = (char)(0x80 | (cp & 0x3f));
			n = 3;
		}
		if (o + n >= cap)
			return -EINVAL;
		memcpy(out + o, tmp, n);
		o += n;
	}
	out[o] = 0;
	return (int)o;
}

int derp_json_int(const char *val, size_t vlen, int64_t *out)
{
	int64_t v = 0;
	size_t i = 0;
	bool neg = false;
	if (vlen && val[0] == '-') {
		neg = true;
		i = 1;
	}
	if (i >= vlen || vlen > 20)
		return -EINVAL;
	for (; i < vlen; i++) {
		if (val[i] < '0' || val[i] > '9')
			return -EINVAL;
		int d = val[i] - '0';
		if (v > (INT64_MAX - d) / 10)
			return -EINVAL;
		v = v * 10 + d;
	}
	*out = neg ? -v : v;
	return 0;
}

int derp_json_object(const char *s, size_t len, derp_json_cb cb, void *arg)
{
	struct scan sc = {.s = s, .len = len};
	skip_ws(&sc);
	if (sc.i >= sc.len || sc.s[sc.i] != '{')
		return -EINVAL;
	sc.i++;
	skip_ws(&sc);
	if (sc.i < sc.len && sc.s[sc.i] == '}') {
		sc.i++;
		goto done;
	}
	for (;;) {
		const char *k, *v;
		size_t kn, vn;
		enum derp_json_type t;
		char key[64];
		skip_ws(&sc);
		if (scan_string(&sc, &k, &kn) < 0)
			return -EINVAL;
		if (derp_json_unescape(k, kn, key, sizeof(key)) < 0)
			key[0] = 0; /* too long to be one of ours: still validated below */
		skip_ws(&sc);
		if (sc.i >= sc.len || sc.s[sc.i] != ':')
			return -EINVAL;
		sc.i++;
		skip_ws(&sc);
		if (scan_value(&sc, 1, &t, &v, &vn) < 0)
			return -EINVAL;
		if (key[0]) {
			int rc = cb(arg, key, t, v, vn);
			if (rc)
				return rc;
		}
		skip_ws(&sc);
		if (sc.i >= sc.len)
			return -EINVAL;
		if (sc.s[sc.i] == ',') {
			sc.i++;
			continue;
		}
		if (sc.s[sc.i] == '}') {
			sc.i++;
			break;
		}
		return -EINVAL;
	}
done:
	skip_ws(&sc);
	return sc.i == sc.len ? 0 : -EINVAL;
}

size_t derp_json_quote(char *out, size_t cap, const char *s)
{
	size_t o = 0;
#define PUT(ch)                        \
	do {                           \
		if (o + 1 >= cap)      \
			return 0;      \
		out[o++] = (char)(ch); \
	} while (0)
	PUT('"');
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p == '"' || *p == '\\') {
			PUT('\\');
			PUT(*p);
		} else if (*p < 0x20) {
			char esc[8];
			snprintf(esc, sizeof(esc), "\\u%04x", *p);
			for (char *e = esc; *e; e++)
				PUT(*e);
		} else {
			PUT(*p);
		}
	}
	PUT('"');
#undef PUT
	out[o] = 0;
	return o;
}
