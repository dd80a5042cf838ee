/* SPDX-License-Identifier: MIT */
/*
 * TLS 1.3 on the migration channels, with GnuTLS: QEMU's library, so that
 * the credential files an operator has for QEMU work here unchanged.
 *
 * Credentials are "psk:FILE" (QEMU's keys.psk: lines "identity:hexkey"; the
 * source presents the first line, the destination takes any) or "x509:DIR"
 * (QEMU's names: ca-cert.pem, optional ca-crl.pem, server-cert.pem and
 * server-key.pem on the destination, client-cert.pem and client-key.pem on
 * the source). Either way both ends prove who they are. An optional authz
 * file narrows who is let in: one identity per line, the peer's x509
 * subject as `certtool -i` prints it ("CN=src,O=Example") or a PSK identity.
 *
 * A session belongs to its socket: once a handshake is done, core/wire's
 * reads and writes on that fd go through it, from whichever thread, one
 * reader and one writer at a time as for a clear socket (GnuTLS allows
 * exactly that). mig_chan_close() ends both; shutdown(2) still kicks.
 */
#ifndef MIG_TLS_H
#define MIG_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

enum mig_tls_role {
	MIG_TLS_CLIENT, /* the source: it connects */
	MIG_TLS_SERVER, /* the destination: it accepts */
};

struct mig_tls;

/* Load credentials for role from spec ("psk:FILE" or "x509:DIR") and
 * authz (a file, or NULL/"" for anyone the credentials admit). 0 with a
 * reference in *out, or -errno with one line in err naming the file and
 * what is wrong with it. */
int mig_tls_load(const char *spec, const char *authz, enum mig_tls_role role,
		 struct mig_tls **out, char *err, size_t errlen);
struct mig_tls *mig_tls_ref(struct mig_tls *t);
void mig_tls_unref(struct mig_tls *t);
/* "psk" or "x509". */
const char *mig_tls_kind(const struct mig_tls *t);

/* The source's handshake on a connected blocking fd, within timeout_ms.
 * host is the name the destination's certificate must carry (x509: NULL
 * is refused, there is nothing to check it against). 0: fd speaks TLS now;
 * -EACCES: authentication failed, either way round; -ETIMEDOUT; else
 * -errno. err says why in one line. */
int mig_tls_client(struct mig_tls *t, int fd, const char *host, int timeout_ms,
		   char *err, size_t errlen);

/* The destination's handshake, driven by its poll loop on a non-blocking
 * fd: start it once, then step it whenever fd is readable. Step: 0 done,
 * -EAGAIN not yet, -EACCES authentication failed, else -errno; on failure
 * the session is gone and err says why (the caller closes fd). */
int mig_tls_server_start(struct mig_tls *t, int fd);
int mig_tls_server_step(int fd, char *err, size_t errlen);

/* The authenticated peer of fd (its subject or PSK identity), or "". */
const char *mig_tls_peer(int fd);
/* Whether fd has a session; the plaintext it holds already decrypted,
 * which a poll on fd cannot see. */
bool mig_tls_active(int fd);
size_t mig_tls_pending(int fd);
/* read(2) on fd, through its session if it has one (EOF without TLS's
 * close_notify is EOF, as for a clear socket). */
ssize_t mig_tls_read(int fd, void *buf, size_t len);
/* All of iov through fd's session, in records as full as they can be:
 * 0, -ETIMEDOUT on a SO_SNDTIMEO expiry, else -errno. */
int mig_tls_sendv(int fd, const struct iovec *iov, int cnt);
/* Drop fd's session, if any, before fd is closed. */
void mig_tls_forget(int fd);

#endif
