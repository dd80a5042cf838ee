// SPDX-License-Identifier: MIT
/* TLS 1.3 on the channels, with GnuTLS. See tls.h. */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include "base/util.h"
#include "core/chan.h"
#include "core/tls.h"

/* TLS 1.3 only; AES-GCM first, which AES-NI makes ten times as fast as
 * ChaCha20 here (bench/tlsref), and the destination's order decides (left
 * to itself GnuTLS took ChaCha20); a PSK handshake still runs ECDHE, so
 * that a key that leaks later does not open recorded migrations. */
#define PRIO_TLS13 "NORMAL:%SERVER_PRECEDENCE:-VERS-ALL:+VERS-TLS1.3:" \
		   "-CIPHER-ALL:+AES-256-GCM:+AES-128-GCM:+CHACHA20-POLY1305"
#define PRIO_X509 PRIO_TLS13
#define PRIO_PSK  PRIO_TLS13 ":-KX-ALL:+ECDHE-PSK"
/* A PSK shorter than 128 bits can be searched for. */
#define PSK_MIN_BYTES 16
#define MAX_AUTHZ 64
/* The most plaintext one record carries. */
#define RECORD_BYTES 16384
/* Reads of 4 KiB a refused client's last bytes get: its flight and hello
 * are a few hundred bytes. */
#define DRAIN_READS 16
/* Sessions by fd: more fds than an engine ever opens. */
#define MAX_FD 65536

struct psk_entry {
	char *id;
	gnutls_datum_t key;     /* binary */
};

struct mig_tls {
	atomic_int refs;
	bool psk;
	enum mig_tls_role role;
	gnutls_certificate_credentials_t x509;
	gnutls_psk_client_credentials_t psk_client;
	gnutls_psk_server_credentials_t psk_server;
	struct psk_entry *keys;
	size_t nkeys;
	char *authz[MAX_AUTHZ];
	size_t nauthz;
};

struct conn {
	gnutls_session_t s;
	struct mig_tls *t;
	char peer[256];
};

static struct conn *_Atomic conns[MAX_FD];

static struct conn *conn_of(int fd)
{
	return fd >= 0 && fd < MAX_FD ? atomic_load(&conns[fd]) : NULL;
}

/* ---- credentials ---- */

static void free_creds(struct mig_tls *t)
{
	if (t->x509)
		gnutls_certificate_free_credentials(t->x509);
	if (t->psk_client)
		gnutls_psk_free_client_credentials(t->psk_client);
	if (t->psk_server)
		gnutls_psk_free_server_credentials(t->psk_server);
	for (size_t i = 0; i < t->nkeys; i++) {
		free(t->keys[i].id);
		gnutls_free(t->keys[i].key.data);
	}
	free(t->keys);
	for (size_t i = 0; i < t->nauthz; i++)
		free(t->authz[i]);
	free(t);
}

struct mig_tls *mig_tls_ref(struct mig_tls *t)
{
	if (t)
		atomic_fetch_add(&t->refs, 1);
	return t;
}

void mig_tls_unref(struct mig_tls *t)
{
	if (t && atomic_fetch_sub(&t->refs, 1) == 1)
		free_creds(t);
}

const char *mig_tls_kind(const struct mig_tls *t)
{
	return t->psk ? "psk" : "x509";
}

/* The lines of a small text file, without comments ('#') and blanks, each
 * trimmed; calls fn(line, ctx) until it fails. 0, or fn's or read's -errno. */
static int each_line(const char *path, int (*fn)(char *line, void *ctx), void *ctx)
{
	FILE *f = fopen(path, "re");
	char line[1024];
	int r = 0;

	if (!f)
		return -errno;
	while (r == 0 && fgets(line, sizeof(line), f)) {
		char *s = line, *e;

		s += strspn(s, " \t");
		e = s + strcspn(s, "\r\n");
		while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
			e--;
		*e = '\0';
		if (*s && *s != '#')
			r = fn(s, ctx);
	}
	if (r == 0 && ferror(f))
		r = -EIO;
	fclose(f);
	return r;
}

static int add_key(char *line, void *ctx)
{
	struct mig_tls *t = ctx;
	char *colon = strchr(line, ':');
	gnutls_datum_t hex, bin = { 0 };
	struct psk_entry *k;

	if (!colon || colon == line)
		return -EINVAL;
	*colon = '\0';
	hex = (gnutls_datum_t){ (unsigned char *)colon + 1,
				(unsigned)strlen(colon + 1) };
	if (gnutls_hex_decode2(&hex, &bin) < 0)
		return -EINVAL;
	if (bin.size < PSK_MIN_BYTES) {
		gnutls_free(bin.data);
		return -EMSGSIZE;
	}
	k = realloc(t->keys, (t->nkeys + 1) * sizeof(*k));
	if (!k || !(k[t->nkeys].id = strdup(line))) {
		t->keys = k ? k : t->keys;
		gnutls_free(bin.data);
		return -ENOMEM;
	}
	t->keys = k;
	k[t->nkeys++].key = bin;
	return 0;
}

static int psk_lookup(gnutls_session_t s, const char *id, gnutls_datum_t *key)
{
	struct mig_tls *t = gnutls_session_get_ptr(s);

	for (size_t i = 0; i < t->nkeys; i++) {
		if (strcmp(t->keys[i].id, id))
			continue;
		key->data = gnutls_malloc(t->keys[i].key.size);
		if (!key->data)
			return -1;
		memcpy(key->data, t->keys[i].key.data, t->keys[i].key.size);
		key->size = t->keys[i].key.size;
		return 0;
	}
	return -1; /* unknown identity: the handshake fails as for a wrong key */
}

static int load_psk(struct mig_tls *t, const char *path, char *err, size_t errlen)
{
	int r = each_line(path, add_key, t);

	if (r == 0 && !t->nkeys)
		r = -ENODATA;
	if (r < 0) {
		snprintf(err, errlen, "%s: %s", path,
			 r == -EINVAL ? "not lines of IDENTITY:HEXKEY" :
			 r == -EMSGSIZE ? "a key is shorter than 128 bits" :
			 r == -ENODATA ? "holds no key" : strerror(-r));
		return r == -EMSGSIZE || r == -ENODATA ? -EINVAL : r;
	}
	if (t->role == MIG_TLS_CLIENT) {
		if (gnutls_psk_allocate_client_credentials(&t->psk_client) < 0 ||
		    gnutls_psk_set_client_credentials(t->psk_client, t->keys[0].id,
						      &t->keys[0].key,
						      GNUTLS_PSK_KEY_RAW) < 0)
			goto nomem;
		return 0;
	}
	if (gnutls_psk_allocate_server_credentials(&t->psk_server) < 0)
		goto nomem;
	gnutls_psk_set_server_credentials_function(t->psk_server, psk_lookup);
	return 0;
nomem:
	snprintf(err, errlen, "%s: out of memory", path);
	return -ENOMEM;
}

static int load_x509(struct mig_tls *t, const char *dir, char *err, size_t errlen)
{
	const char *who = t->role == MIG_TLS_CLIENT ? "client" : "server";
	char path[4][512];
	const char *bad = path[0];
	int r;

	/* QEMU's file names: ca, this side's certificate and key, crl */
	snprintf(path[0], sizeof(path[0]), "%s/ca-cert.pem", dir);
	snprintf(path[1], sizeof(path[1]), "%s/%s-cert.pem", dir, who);
	snprintf(path[2], sizeof(path[2]), "%s/%s-key.pem", dir, who);
	snprintf(path[3], sizeof(path[3]), "%s/ca-crl.pem", dir);
	for (int i = 0; i < 3; i++) {
		if (access(path[i], R_OK) < 0) {
			r = -errno;
			snprintf(err, errlen, "%s: %s", path[i], strerror(-r));
			return r;
		}
	}
	if (gnutls_certificate_allocate_credentials(&t->x509) < 0) {
		snprintf(err, errlen, "%s: out of memory", dir);
		return -ENOMEM;
	}
	r = gnutls_certificate_set_x509_trust_file(t->x509, path[0],
						   GNUTLS_X509_FMT_PEM);
	if (r == 0)
		r = GNUTLS_E_NO_CERTIFICATE_FOUND;
	if (r > 0 && access(path[3], R_OK) == 0) {
		bad = path[3];
		r = gnutls_certificate_set_x509_crl_file(t->x509, path[3],
							 GNUTLS_X509_FMT_PEM);
	}
	if (r >= 0) {
		bad = path[1];
		r = gnutls_certificate_set_x509_key_file(t->x509, path[1], path[2],
							 GNUTLS_X509_FMT_PEM);
	}
	if (r < 0) {
		snprintf(err, errlen, "%s: %s", bad, gnutls_strerror(r));
		return -EINVAL;
	}
	return 0;
}

static int add_authz(char *line, void *ctx)
{
	struct mig_tls *t = ctx;

	if (t->nauthz == MAX_AUTHZ)
		return -E2BIG;
	t->authz[t->nauthz] = strdup(line);
	return t->authz[t->nauthz++] ? 0 : -ENOMEM;
}

int mig_tls_load(const char *spec, const char *authz, enum mig_tls_role role,
		 struct mig_tls **out, char *err, size_t errlen)
{
	struct mig_tls *t = calloc(1, sizeof(*t));
	int r;

	*out = NULL;
	if (!t)
		return -ENOMEM;
	t->refs = 1;
	t->role = role;
	if (!strncmp(spec, "psk:", 4) && spec[4]) {
		t->psk = true;
		r = load_psk(t, spec + 4, err, errlen);
	} else if (!strncmp(spec, "x509:", 5) && spec[5]) {
		r = load_x509(t, spec + 5, err, errlen);
	} else {
		snprintf(err, errlen, "'%s' is neither psk:FILE nor x509:DIR", spec);
		r = -EINVAL;
	}
	if (r == 0 && authz && *authz) {
		r = each_line(authz, add_authz, t);
		if (r == 0 && !t->nauthz)
			r = -ENODATA;
		if (r < 0)
			snprintf(err, errlen, "%s: %s", authz, r == -ENODATA ?
				 "lists nobody" : r == -E2BIG ?
				 "more than 64 identities" : strerror(-r));
	}
	if (r < 0) {
		free_creds(t);
		return r;
	}
	*out = t;
	return 0;
}

/* ---- sessions ---- */

static void conn_free(struct conn *c)
{
	gnutls_deinit(c->s);
	mig_tls_unref(c->t);
	free(c);
}

/* A session on fd, replacing whatever an fd of that number had: a socket
 * just opened cannot be in one. */
static void attach(int fd, struct conn *c)
{
	struct conn *old = atomic_exchange(&conns[fd], c);

	if (old)
		conn_free(old);
}

void mig_tls_forget(int fd)
{
	struct conn *c = fd >= 0 && fd < MAX_FD ?
			 atomic_exchange(&conns[fd], NULL) : NULL;

	if (c)
		conn_free(c);
}

static int session_new(struct mig_tls *t, int fd, const char *host,
		       struct conn **out)
{
	unsigned flags = GNUTLS_NO_SIGNAL | GNUTLS_NO_TICKETS |
			 (t->role == MIG_TLS_SERVER ? GNUTLS_SERVER : GNUTLS_CLIENT);
	void *cred = t->x509;
	struct conn *c;
	int r;

	if (fd < 0 || fd >= MAX_FD)
		return -EMFILE;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	if (gnutls_init(&c->s, flags) < 0) {
		free(c);
		return -ENOMEM;
	}
	c->t = mig_tls_ref(t);
	gnutls_session_set_ptr(c->s, t);
	if (t->psk)
		cred = t->role == MIG_TLS_CLIENT ? (void *)t->psk_client :
						   (void *)t->psk_server;
	r = gnutls_priority_set_direct(c->s, t->psk ? PRIO_PSK : PRIO_X509, NULL);
	if (r >= 0)
		r = gnutls_credentials_set(c->s, t->psk ? GNUTLS_CRD_PSK :
					   GNUTLS_CRD_CERTIFICATE, cred);
	if (r >= 0 && !t->psk) {
		if (t->role == MIG_TLS_SERVER)
			gnutls_certificate_server_set_request(c->s, GNUTLS_CERT_REQUIRE);
		/* the chain against our CA, and on the source the name */
		gnutls_session_set_verify_cert(c->s, host, 0);
	}
	if (r < 0) {
		conn_free(c);
		return -EINVAL;
	}
	gnutls_transport_set_int(c->s, fd);
	*out = c;
	return 0;
}

/* The peer's identity, and whether authz lets it in. */
static int check_peer(struct conn *c, char *err, size_t errlen)
{
	struct mig_tls *t = c->t;

	if (t->psk) {
		const char *id = t->role == MIG_TLS_SERVER ?
				 gnutls_psk_server_get_username(c->s) : NULL;

		/* a PSK server has no identity: knowing the key is all */
		snprintf(c->peer, sizeof(c->peer), "%s", id ? id : "");
	} else {
		unsigned n = 0;
		const gnutls_datum_t *der = gnutls_certificate_get_peers(c->s, &n);
		gnutls_x509_crt_t crt;
		gnutls_datum_t dn = { 0 };

		if (!der || !n || gnutls_x509_crt_init(&crt) < 0)
			return snprintf(err, errlen, "the peer sent no certificate"),
			       -EACCES;
		if (gnutls_x509_crt_import(crt, der, GNUTLS_X509_FMT_DER) == 0 &&
		    gnutls_x509_crt_get_dn3(crt, &dn, 0) == 0)
			snprintf(c->peer, sizeof(c->peer), "%s", (char *)dn.data);
		gnutls_free(dn.data);
		gnutls_x509_crt_deinit(crt);
	}
	if (!t->nauthz || !c->peer[0])
		return 0;
	for (size_t i = 0; i < t->nauthz; i++)
		if (!strcmp(t->authz[i], c->peer))
			return 0;
	snprintf(err, errlen, "%s '%s' is not in the authz list",
		 t->psk ? "identity" : "subject", c->peer);
	gnutls_alert_send(c->s, GNUTLS_AL_FATAL, GNUTLS_A_ACCESS_DENIED);
	return -EACCES;
}

/* Why a handshake failed, in one line, and its -errno. */
static int hs_fail(struct conn *c, int r, char *err, size_t errlen)
{
	gnutls_datum_t out;

	switch (r) {
	case GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR:
		if (gnutls_certificate_verification_status_print(
			    gnutls_session_get_verify_cert_status(c->s),
			    GNUTLS_CRT_X509, &out, 0) < 0)
			break;
		snprintf(err, errlen, "the peer's certificate: %s", out.data);
		gnutls_free(out.data);
		err[strcspn(err, "\n")] = '\0';
		while (*err && err[strlen(err) - 1] == ' ')
			err[strlen(err) - 1] = '\0';
		return -EACCES;
	case GNUTLS_E_FATAL_ALERT_RECEIVED:
		snprintf(err, errlen, "the peer refused us%s: %s", c->t->psk ?
			 " (not the same pre-shared key?)" : "",
			 gnutls_alert_get_name(gnutls_alert_get(c->s)));
		return -EACCES;
	case GNUTLS_E_TIMEDOUT:
		snprintf(err, errlen, "the TLS handshake timed out");
		return -ETIMEDOUT;
	case GNUTLS_E_PREMATURE_TERMINATION:
	case GNUTLS_E_PULL_ERROR:
	case GNUTLS_E_PUSH_ERROR:
		snprintf(err, errlen, "the peer closed the connection during the "
			 "TLS handshake");
		return -ECONNRESET;
	case GNUTLS_E_UNEXPECTED_PACKET_LENGTH:
	case GNUTLS_E_UNSUPPORTED_VERSION_PACKET:
	case GNUTLS_E_UNEXPECTED_PACKET:
		snprintf(err, errlen, "the peer does not speak TLS 1.3 (%s): is "
			 "TLS on at both ends?", gnutls_strerror(r));
		return -EACCES;
	}
	snprintf(err, errlen, "%s%s", gnutls_strerror(r), c->t->psk ?
		 " (not the same pre-shared key, or an unknown identity?)" : "");
	return -EACCES;
}

/* A failed handshake: tell the peer why before the close, so that its
 * operator reads a reason, not a reset (best effort: a non-blocking fd). */
static int hs_end(struct conn *c, int r, char *err, size_t errlen)
{
	int e = hs_fail(c, r, err, errlen);

	if (e == -EACCES && r != GNUTLS_E_FATAL_ALERT_RECEIVED)
		gnutls_alert_send_appropriate(c->s, r);
	return e;
}

int mig_tls_client(struct mig_tls *t, int fd, const char *host, int timeout_ms,
		   char *err, size_t errlen)
{
	struct conn *c;
	int r;

	if (!t->psk && (!host || !*host)) {
		snprintf(err, errlen, "x509 needs the destination's host name to "
			 "check its certificate against: set tls-hostname");
		return -EINVAL;
	}
	r = session_new(t, fd, host, &c);
	if (r < 0) {
		snprintf(err, errlen, "cannot start TLS: %s", strerror(-r));
		return r;
	}
	gnutls_handshake_set_timeout(c->s, timeout_ms > 0 ? (unsigned)timeout_ms :
				     GNUTLS_DEFAULT_HANDSHAKE_TIMEOUT);
	do
		r = gnutls_handshake(c->s);
	while (r < 0 && !gnutls_error_is_fatal(r));
	r = r == 0 ? check_peer(c, err, errlen) : hs_end(c, r, err, errlen);
	if (r < 0) {
		conn_free(c);
		return r;
	}
	attach(fd, c);
	return 0;
}

int mig_tls_server_start(struct mig_tls *t, int fd)
{
	struct conn *c;
	int r = session_new(t, fd, NULL, &c);

	if (r == 0)
		attach(fd, c);
	return r;
}

/* What the client sent past the record we refused (TLS 1.3: the rest of
 * its flight, its hello), read and dropped: a close with bytes unread is a
 * reset, which can overtake our alert and leave the client a "connection
 * reset" instead of a reason. Bounded, so that a peer that keeps sending
 * cannot hold the caller. */
static void drain(int fd)
{
	char junk[4096];

	for (int i = 0; i < DRAIN_READS && recv(fd, junk, sizeof(junk),
						MSG_DONTWAIT) > 0; i++)
		;
}

int mig_tls_server_step(int fd, char *err, size_t errlen)
{
	struct conn *c = conn_of(fd);
	int r;

	if (!c)
		return -EBADF;
	do
		r = gnutls_handshake(c->s);
	while (r < 0 && r != GNUTLS_E_AGAIN && !gnutls_error_is_fatal(r));
	if (r == GNUTLS_E_AGAIN)
		return -EAGAIN;
	r = r == 0 ? check_peer(c, err, errlen) : hs_end(c, r, err, errlen);
	if (r < 0) {
		drain(fd);
		mig_tls_forget(fd);
	}
	return r;
}

const char *mig_tls_peer(int fd)
{
	struct conn *c = conn_of(fd);

	return c ? c->peer : "";
}

/* ---- records ---- */

bool mig_tls_active(int fd)
{
	return conn_of(fd) != NULL;
}

size_t mig_tls_pending(int fd)
{
	struct conn *c = conn_of(fd);

	return c ? gnutls_record_check_pending(c->s) : 0;
}

static int tls_errno(ssize_t r)
{
	switch (r) {
	case GNUTLS_E_AGAIN:
		return EAGAIN;
	case GNUTLS_E_PULL_ERROR:
	case GNUTLS_E_PUSH_ERROR:
		return errno && errno != EAGAIN ? errno : ECONNRESET;
	case GNUTLS_E_PREMATURE_TERMINATION:
		return ECONNRESET; /* a write into a reset: not a protocol error */
	case GNUTLS_E_DECRYPTION_FAILED:
		return EBADMSG; /* a record that fails its MAC: altered on the way */
	case GNUTLS_E_FATAL_ALERT_RECEIVED:
		return EACCES;  /* the peer's authz refused us */
	}
	/* not EPROTO: callers take that for a refusal already reported */
	return EIO;
}

ssize_t mig_tls_read(int fd, void *buf, size_t len)
{
	struct conn *c = conn_of(fd);
	ssize_t n;

	if (!c)
		return read(fd, buf, len);
	do
		n = gnutls_record_recv(c->s, buf, len);
	while (n == GNUTLS_E_INTERRUPTED);
	if (n >= 0)
		return n;
	if (n == GNUTLS_E_PREMATURE_TERMINATION)
		return 0;
	errno = tls_errno(n);
	return -1;
}

static int send_all(struct conn *c, const uint8_t *p, size_t len)
{
	while (len) {
		ssize_t n = gnutls_record_send(c->s, p, len);

		/* again with the same arguments, as GnuTLS asks; a timeout
		 * on a link that moves is no failure (mig_chan_moving) */
		if (n == GNUTLS_E_INTERRUPTED ||
		    (n == GNUTLS_E_AGAIN && mig_chan_moving(gnutls_transport_get_int(c->s))))
			continue;
		if (n < 0)
			return n == GNUTLS_E_AGAIN ? -ETIMEDOUT : -tls_errno(n);
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int mig_tls_sendv(int fd, const struct iovec *iov, int cnt)
{
	struct conn *c = conn_of(fd);
	uint8_t buf[RECORD_BYTES];
	size_t have = 0;
	int r = 0;

	if (!c)
		return -EBADF;
	for (int i = 0; i < cnt && r == 0; i++) {
		const uint8_t *p = iov[i].iov_base;
		size_t left = iov[i].iov_len, n;

		for (; left && r == 0; p += n, left -= n) {
			if (!have && left >= RECORD_BYTES) {
				/* whole records straight from the caller */
				n = left - left % RECORD_BYTES;
				r = send_all(c, p, n);
				continue;
			}
			n = left < RECORD_BYTES - have ? left : RECORD_BYTES - have;
			memcpy(buf + have, p, n);
			have += n;
			if (have == RECORD_BYTES) {
				r = send_all(c, buf, have);
				have = 0;
			}
		}
	}
	if (r == 0 && have)
		r = send_all(c, buf, have);
	return r;
}
