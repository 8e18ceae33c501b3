/* OpenSSL contexts for DERP and non-blocking I/O over plain or TLS sockets. */
#include "derp/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

void derp_tls_err(char *err, size_t errlen, const char *what)
{
	unsigned long e = ERR_get_error();
	char buf[256] = "unknown error";
	if (e)
		ERR_error_string_n(e, buf, sizeof(buf));
	ERR_clear_error();
	if (err && errlen)
		snprintf(err, errlen, "%s: %s", what, buf);
}

static bool is_ip_literal(const char *s)
{
	unsigned char b[16];
	return s && (inet_pton(AF_INET, s, b) == 1 || inet_pton(AF_INET6, s, b) == 1);
}

/* ---- server ---- */

/* SNI check for derper's manual mode: the name must match exactly. */
static int sni_cb(SSL *ssl, int *alert, void *arg)
{
	const char *want = arg;
	const char *got = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
	if (!got || strcasecmp(got, want) != 0) {
		*alert = SSL_AD_UNRECOGNIZED_NAME;
		return SSL_TLSEXT_ERR_ALERT_FATAL;
	}
	return SSL_TLSEXT_ERR_OK;
}

/* A TLS 1.2+ context for either side. Partial writes and moving buffers:
 * the loop writes what the socket takes and retries from wherever the
 * queue keeps the rest. Release buffers so idle connections stay small.
 * Read-ahead into a buffer of several records: one read() per burst
 * instead of two per record (header, then body); derp_io_pending then
 * also reports bytes read but not yet decrypted, which epoll cannot see. */
#define DERP_TLS_READ_BUF (64 * 1024) /* read-ahead: four full records per read */

#define DERP_TLS13_SUITES "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"

static SSL_CTX *ctx_new(const SSL_METHOD *method, char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(method);
	if (!ctx) {
		derp_tls_err(err, errlen, "SSL_CTX_new");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	/* AES-128-GCM first, as Go's crypto/tls (derper, Tailscale's clients)
	 * orders TLS 1.3's suites on AES-NI machines: ~13 % faster than
	 * OpenSSL's default AES-256-GCM, and every relayed packet is sealed
	 * and opened twice on its way through a relay. */
	if (!SSL_CTX_set_ciphersuites(ctx, DERP_TLS13_SUITES)) {
		derp_tls_err(err, errlen, "SSL_CTX_set_ciphersuites");
		SSL_CTX_free(ctx);
		return NULL;
	}
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
				      SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_read_ahead(ctx, 1);
	SSL_CTX_set_default_read_buffer_len(ctx, DERP_TLS_READ_BUF);
	return ctx;
}

static SSL_CTX *server_ctx_base(const char *require_sni, char *err, size_t errlen)
{
	SSL_CTX *ctx = ctx_new(TLS_server_method(), err, errlen);
	if (!ctx)
		return NULL;
	SSL_CTX_set_options(ctx,
			    SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_IGNORE_UNEXPECTED_EOF);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_num_tickets(ctx, 0);
	if (require_sni && *require_sni && !is_ip_literal(require_sni)) {
		char *name = strdup(require_sni);
		if (!name) {
			SSL_CTX_free(ctx);
			snprintf(err, errlen, "out of memory");
			return NULL;
		}
		/* The name lives as long as the ctx (ex_data would be tidier;
		 * contexts live for the server's lifetime). */
		SSL_CTX_set_tlsext_servername_callback(ctx, sni_cb);
		SSL_CTX_set_tlsext_servername_arg(ctx, name);
		SSL_CTX_set_app_data(ctx, name);
	}
	return ctx;
}

SSL_CTX *derp_tls_server_ctx_files(const char *cert_file, const char *key_file, const char *require_sni, char *err,
				   size_t errlen)
{
	SSL_CTX *ctx = server_ctx_base(require_sni, err, errlen);
	if (!ctx)
		return NULL;
	if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
		derp_tls_err(err, errlen, cert_file);
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1) {
		derp_tls_err(err, errlen, key_file);
		goto fail;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		derp_tls_err(err, errlen, "certificate and key do not match");
		goto fail;
	}
	return ctx;
fail:
	free(SSL_CTX_get_app_data(ctx));
	SSL_CTX_free(ctx);
	return NULL;
}

SSL_CTX *derp_tls_server_ctx_pem(const char *cert_pem, const char *key_pem, const char *require_sni, char *err,
				 size_t errlen)
{
	SSL_CTX *ctx = server_ctx_base(require_sni, err, errlen);
	X509 *x = NULL;
	EVP_PKEY *k = NULL;
	BIO *b = NULL;
	if (!ctx)
		return NULL;
	b = BIO_new_mem_buf(cert_pem, -1);
	x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
	BIO_free(b);
	b = BIO_new_mem_buf(key_pem, -1);
	k = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
	BIO_free(b);
	if (!x || !k || SSL_CTX_use_certificate(ctx, x) != 1 || SSL_CTX_use_PrivateKey(ctx, k) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1) {
		derp_tls_err(err, errlen, "loading certificate");
		X509_free(x);
		EVP_PKEY_free(k);
		free(SSL_CTX_get_app_data(ctx));
		SSL_CTX_free(ctx);
		return NULL;
	}
	X509_free(x);
	EVP_PKEY_free(k);
	return ctx;
}

static int add_ext(X509 *x, int nid, const char *value)
{
	X509V3_CTX v3;
	X509V3_set_ctx_nodb(&v3);
	X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
	X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
	if (!ext)
		return -1;
	int ok = X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	return ok == 1 ? 0 : -1;
}

static char *bio_to_str(BIO *b)
{
	char *data;
	long n = BIO_get_mem_data(b, &data);
	if (n <= 0)
		return NULL;
	char *s = malloc((size_t)n + 1);
	if (!s)
		return NULL;
	memcpy(s, data, (size_t)n);
	s[n] = 0;
	return s;
}

static int cert_der_sha256(X509 *x, uint8_t out[32])
{
	unsigned char *der = NULL;
	int n = i2d_X509(x, &der);
	if (n <= 0)
		return -EINVAL;
	unsigned int olen = 32;
	int ok = EVP_Digest(der, (size_t)n, out, &olen, EVP_sha256(), NULL);
	OPENSSL_free(der);
	return ok == 1 ? 0 : -EINVAL;
}

int derp_tls_self_signed(const char *hostname, char **cert_pem, char **key_pem, uint8_t cert_sha256[32], char *err,
			 size_t errlen)
{
	int rc = -EINVAL;
	EVP_PKEY *k = NULL;
	X509 *x = NULL;
	BIO *cb = NULL, *kb = NULL;
	char san[300];
	*cert_pem = *key_pem = NULL;
	if (!hostname || !*hostname || strlen(hostname) > 253) {
		snprintf(err, errlen, "self-signed certificate: hostname must be 1..253 characters");
		return -EINVAL;
	}
	for (const char *p = hostname; *p; p++) {
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '.' ||
		      *p == '-' || *p == ':')) {
			snprintf(err, errlen, "self-signed certificate: %s is not a DNS name or IP address", hostname);
			return -EINVAL;
		}
	}
	k = EVP_EC_gen("P-256");
	x = X509_new();
	if (!k || !x)
		goto ossl_fail;
	uint8_t serial[16];
	if (RAND_bytes(serial, sizeof(serial)) != 1)
		goto ossl_fail;
	serial[0] &= 0x7f;
	BIGNUM *bn = BN_bin2bn(serial, sizeof(serial), NULL);
	if (!bn || !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x))) {
		BN_free(bn);
		goto ossl_fail;
	}
	BN_free(bn);
	X509_set_version(x, 2);
	X509_gmtime_adj(X509_getm_notBefore(x), -300);
	X509_gmtime_adj(X509_getm_notAfter(x), 365L * 24 * 3600);
	X509_NAME *name = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)hostname, -1, -1, 0);
	X509_set_issuer_name(x, name);
	X509_set_pubkey(x, k);
	snprintf(san, sizeof(san), "%s:%s", is_ip_literal(hostname) ? "IP" : "DNS", hostname);
	if (add_ext(x, NID_basic_constraints, "critical,CA:FALSE") < 0 ||
	    add_ext(x, NID_key_usage, "critical,digitalSignature,keyEncipherment") < 0 ||
	    add_ext(x, NID_ext_key_usage, "serverAuth") < 0 || add_ext(x, NID_subject_key_identifier, "hash") < 0 ||
	    add_ext(x, NID_subject_alt_name, san) < 0)
		goto ossl_fail;
	if (!X509_sign(x, k, EVP_sha256()))
		goto ossl_fail;
	cb = BIO_new(BIO_s_mem());
	kb = BIO_new(BIO_s_secmem());
	if (!cb || !kb || !PEM_write_bio_X509(cb, x) || !PEM_write_bio_PrivateKey(kb, k, NULL, NULL, 0, NULL, NULL))
		goto ossl_fail;
	*cert_pem = bio_to_str(cb);
	*key_pem = bio_to_str(kb);
	if (!*cert_pem || !*key_pem || cert_der_sha256(x, cert_sha256) < 0) {
		free(*cert_pem);
		derp_tls_free_secret(*key_pem);
		*cert_pem = *key_pem = NULL;
		rc = -ENOMEM;
		snprintf(err, errlen, "self-signed certificate: out of memory");
		goto out;
	}
	rc = 0;
	goto out;
ossl_fail:
	derp_tls_err(err, errlen, "self-signed certificate");
out:
	BIO_free(cb);
	BIO_free(kb);
	X509_free(x);
	EVP_PKEY_free(k);
	return rc;
}

void derp_tls_free_secret(char *s)
{
	if (!s)
		return;
	OPENSSL_cleanse(s, strlen(s));
	free(s);
}

int derp_tls_pem_sha256(const char *cert_pem, uint8_t out[32])
{
	BIO *b = BIO_new_mem_buf(cert_pem, -1);
	X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
	BIO_free(b);
	if (!x) {
		ERR_clear_error();
		return -EINVAL;
	}
	int rc = cert_der_sha256(x, out);
	X509_free(x);
	return rc;
}

void derp_tls_ctx_free(SSL_CTX *ctx)
{
	if (!ctx)
		return;
	free(SSL_CTX_get_app_data(ctx));
	SSL_CTX_free(ctx);
}

/* ---- client ---- */

SSL_CTX *derp_tls_client_ctx(const char *ca_file, const char *ca_pem, bool insecure, char *err, size_t errlen)
{
	SSL_CTX *ctx = ctx_new(TLS_client_method(), err, errlen);
	if (!ctx)
		return NULL;
	/* A TCP EOF without close_notify reads as EOF; DERP framing notices
	 * truncation on its own. */
	SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
	/* No ALPN at all: an h2-capable server must not pick HTTP/2. */
	if (insecure) {
		SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
		return ctx;
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	if (!ca_file && !ca_pem) {
		if (SSL_CTX_set_default_verify_paths(ctx) != 1)
			goto fail;
		return ctx;
	}
	if (ca_file && SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1)
		goto fail;
	if (ca_pem) {
		BIO *b = BIO_new_mem_buf(ca_pem, -1);
		X509_STORE *st = SSL_CTX_get_cert_store(ctx);
		X509 *x;
		int added = 0;
		while (b && (x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
			X509_STORE_add_cert(st, x);
			X509_free(x);
			added++;
		}
		BIO_free(b);
		ERR_clear_error(); /* the end-of-data "error" */
		if (!added) {
			snprintf(err, errlen, "CA PEM holds no certificate");
			SSL_CTX_free(ctx);
			return NULL;
		}
		/* A self-signed leaf trusted directly (derper's IP certs). */
		X509_STORE_set_flags(st, X509_V_FLAG_PARTIAL_CHAIN);
	}
	return ctx;
fail:
	derp_tls_err(err, errlen, "loading trust anchors");
	SSL_CTX_free(ctx);
	return NULL;
}

SSL *derp_tls_client_ssl(SSL_CTX *ctx, int fd, const char *servername)
{
	SSL *ssl = SSL_new(ctx);
	if (!ssl)
		return NULL;
	if (SSL_set_fd(ssl, fd) != 1)
		goto fail;
	bool ip = is_ip_literal(servername);
	if (servername && *servername && !ip && SSL_set_tlsext_host_name(ssl, servername) != 1)
		goto fail;
	if (servername && *servername && SSL_CTX_get_verify_mode(ctx) != SSL_VERIFY_NONE) {
		X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);
		int ok = ip ? X509_VERIFY_PARAM_set1_ip_asc(vp, servername)
			    : X509_VERIFY_PARAM_set1_host(vp, servername, 0);
		if (ok != 1)
			goto fail;
	}
	SSL_set_connect_state(ssl);
	return ssl;
fail:
	ERR_clear_error();
	SSL_free(ssl);
	return NULL;
}

int derp_tls_peer_sha256(SSL *ssl, uint8_t out[32])
{
	X509 *x = SSL_get1_peer_certificate(ssl);
	if (!x)
		return -ENOENT;
	int rc = cert_der_sha256(x, out);
	X509_free(x);
	return rc;
}

/* ---- non-blocking I/O ---- */

int derp_io_init_server(struct derp_io *io, int fd, SSL_CTX *ctx)
{
	memset(io, 0, sizeof(*io));
	io->fd = fd;
	if (!ctx) {
		io->handshake_done = true;
		return 0;
	}
	io->ssl = SSL_new(ctx);
	if (!io->ssl || SSL_set_fd(io->ssl, fd) != 1) {
		ERR_clear_error();
		SSL_free(io->ssl);
		io->ssl = NULL;
		return -ENOMEM;
	}
	SSL_set_accept_state(io->ssl);
	return 0;
}

void derp_io_init_client(struct derp_io *io, int fd, SSL *ssl)
{
	memset(io, 0, sizeof(*io));
	io->fd = fd;
	io->ssl = ssl;
	io->handshake_done = ssl == NULL;
}

/* Maps an SSL result; sets want flags on retryable errors. */
static int ssl_result(struct derp_io *io, int ret)
{
	int e = SSL_get_error(io->ssl, ret);
	switch (e) {
	case SSL_ERROR_WANT_READ: io->want_read = true; return -EAGAIN;
	case SSL_ERROR_WANT_WRITE: io->want_write = true; return -EAGAIN;
	case SSL_ERROR_ZERO_RETURN: ERR_clear_error(); return 0;
	case SSL_ERROR_SYSCALL: {
		int err = errno;
		ERR_clear_error();
		/* OpenSSL 3: unexpected EOF is reported as SSL_ERROR_SSL; a
		 * SYSCALL with errno 0 is an EOF too. */
		return err ? -err : -ECONNRESET;
	}
	default:
		io->ssl_err = ERR_peek_error(); /* the reason, for the caller's message */
		ERR_clear_error();
		return -EPROTO;
	}
}

int derp_io_handshake(struct derp_io *io)
{
	if (io->handshake_done)
		return 1;
	io->want_read = io->want_write = false;
	errno = 0;
	int r = SSL_do_handshake(io->ssl);
	if (r == 1) {
		io->handshake_done = true;
		return 1;
	}
	int rc = ssl_result(io, r);
	if (rc == -EAGAIN)
		return 0;
	return rc == 0 ? -ECONNRESET : (rc == -EPROTO ? -EPROTO : -ECONNRESET);
}

/* Plain TCP: one recv (rbuf) or send (wbuf), retried on EINTR; a full
 * socket sets *want and gives -EAGAIN. */
static ssize_t plain_io(int fd, void *rbuf, const void *wbuf, size_t len, bool *want)
{
	for (;;) {
		ssize_t n = rbuf ? recv(fd, rbuf, len, 0) : send(fd, wbuf, len, MSG_NOSIGNAL);
		if (n >= 0)
			return n;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			*want = true;
			return -EAGAIN;
		}
		return -errno;
	}
}

ssize_t derp_io_read(struct derp_io *io, void *buf, size_t len)
{
	io->want_read = io->want_write = false;
	if (!io->ssl)
		return plain_io(io->fd, buf, NULL, len, &io->want_read);
	size_t got = 0;
	errno = 0;
	if (SSL_read_ex(io->ssl, buf, len, &got) == 1)
		return (ssize_t)got;
	return ssl_result(io, 0);
}

ssize_t derp_io_write(struct derp_io *io, const void *buf, size_t len)
{
	io->want_read = io->want_write = false;
	if (!io->ssl)
		return plain_io(io->fd, NULL, buf, len, &io->want_write);
	size_t put = 0;
	errno = 0;
	int r = SSL_write_ex(io->ssl, buf, len, &put);
	if (r == 1)
		return (ssize_t)put;
	int rc = ssl_result(io, 0);
	return rc == 0 ? -EPIPE : rc;
}

size_t derp_io_pending(const struct derp_io *io)
{
	if (!io->ssl)
		return 0;
	int n = SSL_pending(io->ssl);
	/* Read-ahead: whole records may wait undecrypted (n is 0 then). */
	return n > 0 ? (size_t)n : (size_t)SSL_has_pending(io->ssl);
}

void derp_io_close(struct derp_io *io)
{
	if (io->ssl) {
		/* One non-blocking attempt at close_notify; never wait for it. */
		if (io->handshake_done)
			SSL_shutdown(io->ssl);
		ERR_clear_error();
		SSL_free(io->ssl);
		io->ssl = NULL;
	}
	if (io->fd >= 0)
		close(io->fd);
	io->fd = -1;
}
