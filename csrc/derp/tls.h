/* derp tls: OpenSSL contexts for DERP (server and client) and non-blocking
 * I/O over a plain or TLS socket, for use on the runtime loop.
 *
 * TLS >= 1.2, no ALPN offered or selected (a DERP upgrade must not end up on
 * HTTP/2), SNI sent by clients. Self-signed certificates are P-256, valid 1
 * year, for a DNS name or an IP literal, like derper's manual cert mode. */
#ifndef SPANZA_DERP_TLS_H
#define SPANZA_DERP_TLS_H

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* ---- contexts ----
 * On failure these return NULL and write a message into err[errlen]. */

/* Server context from PEM files (certificate chain, private key).
 * require_sni: if non-NULL, handshakes whose SNI differs are refused (derper
 * manual mode with a DNS hostname). */
SSL_CTX *derp_tls_server_ctx_files(const char *cert_file, const char *key_file, const char *require_sni, char *err,
				   size_t errlen);
/* Server context from PEM text (as made by derp_tls_self_signed). */
SSL_CTX *derp_tls_server_ctx_pem(const char *cert_pem, const char *key_pem, const char *require_sni, char *err,
				 size_t errlen);
/* A new self-signed P-256 certificate for hostname (DNS name or IP literal,
 * put in the subjectAltName). *cert_pem and *key_pem are malloc'd PEM text
 * (free; wipe the key with derp_tls_free_secret). cert_sha256 = SHA-256 of
 * the certificate's DER (derper's "sha256-raw:<hex>" CertName). 0 or -errno. */
int derp_tls_self_signed(const char *hostname, char **cert_pem, char **key_pem, uint8_t cert_sha256[32], char *err,
			 size_t errlen);
/* Frees a context made by any derp_tls_*_ctx* function. */
void derp_tls_ctx_free(SSL_CTX *ctx);
/* Wipes and frees a malloc'd secret string. */
void derp_tls_free_secret(char *s);
/* SHA-256 of the first certificate in a PEM text. 0 or -EINVAL. */
int derp_tls_pem_sha256(const char *cert_pem, uint8_t out[32]);

/* Client context. ca_pem / ca_file: trust anchors (either may be NULL; both
 * NULL = system default paths). insecure: no verification at all (tests,
 * or when pinning with derp_tls_peer_sha256 instead). */
SSL_CTX *derp_tls_client_ctx(const char *ca_file, const char *ca_pem, bool insecure, char *err, size_t errlen);
/* A client SSL on fd with SNI = servername (skipped for IP literals, as Go
 * does) and, unless the ctx is insecure, hostname/IP verification. */
SSL *derp_tls_client_ssl(SSL_CTX *ctx, int fd, const char *servername);
/* SHA-256 of the peer's leaf certificate DER (for sha256-raw pinning). 0 or -ENOENT. */
int derp_tls_peer_sha256(SSL *ssl, uint8_t out[32]);
/* Last OpenSSL error queue entry as text (clears the queue). */
void derp_tls_err(char *err, size_t errlen, const char *what);

/* ---- non-blocking I/O on a plain or TLS socket ----
 * fd is non-blocking. After -EAGAIN, want_read/want_write say which epoll
 * event lets the call make progress (for TLS, a read may need EPOLLOUT and a
 * write EPOLLIN). */
struct derp_io {
	int fd;
	SSL *ssl; /* NULL: plain TCP */
	bool want_read;
	bool want_write;
	bool handshake_done;
	unsigned long ssl_err; /* OpenSSL's first error code of the last -EPROTO (0: none) */
};

/* Server side: wraps fd in SSL from ctx (ctx NULL = plain). 0 or -ENOMEM. */
int derp_io_init_server(struct derp_io *io, int fd, SSL_CTX *ctx);
/* Client side: ssl from derp_tls_client_ssl, or NULL for plain. */
void derp_io_init_client(struct derp_io *io, int fd, SSL *ssl);
/* Drives the TLS handshake: 1 done (also for plain), 0 in progress (see
 * want_*), -ECONNRESET/-EPROTO on failure. */
int derp_io_handshake(struct derp_io *io);
/* >0 bytes read, 0 on EOF, -EAGAIN, or -errno / -EPROTO. */
ssize_t derp_io_read(struct derp_io *io, void *buf, size_t len);
/* >0 bytes written (may be partial), -EAGAIN, or -errno / -EPROTO. After
 * -EAGAIN on TLS, retry with the same leading bytes (they may have been
 * buffered at a different address: moving buffers are allowed). */
ssize_t derp_io_write(struct derp_io *io, const void *buf, size_t len);
/* Non-zero while SSL holds bytes already read from the socket: decrypted
 * ones (their count) or records not yet decrypted (read-ahead; then 1).
 * Read them before waiting for EPOLLIN again. */
size_t derp_io_pending(const struct derp_io *io);
/* Frees the SSL (best-effort close_notify, never blocks) and closes fd. */
void derp_io_close(struct derp_io *io);

#endif
