// SPDX-License-Identifier: MIT
/*
 * Unit tests for core/tls: which credential files are refused and why, a
 * PSK handshake over a socketpair (the source blocking, the destination
 * stepped as its poll loop steps it), a wrong key refused on both ends,
 * and messages of every size crossing intact through core/wire.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/util.h"
#include "core/chan.h"
#include "core/tls.h"
#include "core/wire.h"

#define KEY_A "mig:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n"
#define KEY_B "mig:ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100\n"

static char dir[] = "/tmp/mig-test-tls.XXXXXX";

static const char *file_with(const char *name, const char *text)
{
	static char path[4][256];
	static int next;
	char *p = path[next++ % 4];
	FILE *f;

	snprintf(p, sizeof(path[0]), "%s/%s", dir, name);
	f = fopen(p, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	return p;
}

static int setup(void **state)
{
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[300];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static void refused(const char *spec, const char *authz, const char *want)
{
	struct mig_tls *t = NULL;
	char err[600];

	assert_true(mig_tls_load(spec, authz, MIG_TLS_SERVER, &t, err, sizeof(err)) < 0);
	assert_null(t);
	if (!strstr(err, want))
		fail_msg("%s: '%s' does not say '%s'", spec, err, want);
}

static void test_bad_credentials(void **state)
{
	char spec[300];

	refused("tls0", NULL, "neither psk:FILE nor x509:DIR");
	refused("psk:", NULL, "neither psk:FILE nor x509:DIR");
	refused("psk:/nonexistent/keys.psk", NULL, "No such file");
	snprintf(spec, sizeof(spec), "psk:%s", file_with("nocolon.psk", "deadbeef\n"));
	refused(spec, NULL, "not lines of IDENTITY:HEXKEY");
	snprintf(spec, sizeof(spec), "psk:%s", file_with("short.psk", "mig:0011\n"));
	refused(spec, NULL, "shorter than 128 bits");
	snprintf(spec, sizeof(spec), "psk:%s", file_with("nothex.psk", "mig:zz112233445566778899aabbccddeeff\n"));
	refused(spec, NULL, "not lines of IDENTITY:HEXKEY");
	snprintf(spec, sizeof(spec), "psk:%s", file_with("empty.psk", "# nothing\n\n"));
	refused(spec, NULL, "holds no key");
	snprintf(spec, sizeof(spec), "x509:%s", dir);
	refused(spec, NULL, "ca-cert.pem");
	snprintf(spec, sizeof(spec), "psk:%s", file_with("a.psk", KEY_A));
	refused(spec, file_with("authz", "# only comments\n"), "lists nobody");
}

struct client {
	struct mig_tls *t;
	int fd, r;
	char err[600];
};

static void *client_main(void *arg)
{
	struct client *c = arg;

	c->r = mig_tls_client(c->t, c->fd, NULL, 5000, c->err, sizeof(c->err));
	return NULL;
}

/* A handshake between a source holding key `a` and a destination holding
 * `b`: the destination's step result; *client_r the source's. */
static int handshake(const char *a, const char *b, const char *authz,
		     int sv[2], int *client_r, char *err, size_t errlen)
{
	char spec[300];
	struct mig_tls *srv;
	struct client c = { .r = 1 };
	pthread_t thr;
	int r;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	snprintf(spec, sizeof(spec), "psk:%s", file_with("src.psk", a));
	assert_int_equal(mig_tls_load(spec, NULL, MIG_TLS_CLIENT, &c.t, err, errlen), 0);
	snprintf(spec, sizeof(spec), "psk:%s", file_with("dst.psk", b));
	assert_int_equal(mig_tls_load(spec, authz, MIG_TLS_SERVER, &srv, err, errlen), 0);
	c.fd = sv[0];
	mig_set_nonblock(sv[1], true);
	assert_int_equal(mig_tls_server_start(srv, sv[1]), 0);
	mig_tls_unref(srv); /* the session holds its own */
	assert_int_equal(pthread_create(&thr, NULL, client_main, &c), 0);
	do {
		struct pollfd p = { .fd = sv[1], .events = POLLIN };

		assert_true(poll(&p, 1, 5000) == 1);
		r = mig_tls_server_step(sv[1], err, errlen);
	} while (r == -EAGAIN);
	if (r < 0)
		mig_chan_kick(sv[1]); /* as the destination's close would */
	pthread_join(thr, NULL);
	mig_tls_unref(c.t);
	*client_r = c.r;
	return r;
}

static void test_wrong_key(void **state)
{
	char err[600];
	int sv[2], cr, r = handshake(KEY_A, KEY_B, NULL, sv, &cr, err, sizeof(err));

	assert_int_equal(r, -EACCES);
	assert_true(cr < 0);
	assert_false(mig_tls_active(sv[1]));
	mig_chan_close(sv[0]);
	mig_chan_close(sv[1]);
}

static void test_authz(void **state)
{
	char err[600];
	int sv[2], cr, r;

	r = handshake(KEY_A, KEY_A, file_with("authz", "someone-else\n"), sv, &cr,
		      err, sizeof(err));
	assert_int_equal(r, -EACCES);
	assert_non_null(strstr(err, "identity 'mig' is not in the authz list"));
	mig_chan_close(sv[0]);
	mig_chan_close(sv[1]);
	r = handshake(KEY_A, KEY_A, file_with("authz", "# the source\nmig\n"), sv,
		      &cr, err, sizeof(err));
	assert_int_equal(r, 0);
	assert_string_equal(mig_tls_peer(sv[1]), "mig");
	mig_chan_close(sv[0]);
	mig_chan_close(sv[1]);
}

struct sender {
	int fd;
	size_t len;
	const uint8_t *data;
	int r;
};

static void *sender_main(void *arg)
{
	struct sender *s = arg;
	uint8_t hdr[16] = { 7 };

	s->r = mig_wire_send2(s->fd, MIG_MSG_PAGES, hdr, sizeof(hdr), s->data, s->len);
	return NULL;
}

/* Messages around the record size, and the largest, arrive whole. */
static void test_messages(void **state)
{
	static const size_t lens[] = { 0, 1, 16367, 16368, 16384, 65536, 1 << 20 };
	uint8_t *data = malloc(1 << 20), *buf = malloc(MIG_WIRE_MAX_PAYLOAD);
	char err[600];
	int sv[2], cr;

	assert_int_equal(handshake(KEY_A, KEY_A, NULL, sv, &cr, err, sizeof(err)), 0);
	assert_int_equal(cr, 0);
	mig_set_nonblock(sv[1], false);
	for (size_t i = 0; i < (1 << 20); i++)
		data[i] = (uint8_t)(i * 2654435761u >> 24);
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		struct sender s = { sv[0], lens[i], data, 1 };
		uint32_t type, len;
		pthread_t thr;

		assert_int_equal(pthread_create(&thr, NULL, sender_main, &s), 0);
		assert_int_equal(mig_wire_recv(sv[1], &type, buf, MIG_WIRE_MAX_PAYLOAD, &len), 0);
		pthread_join(thr, NULL);
		assert_int_equal(s.r, 0);
		assert_int_equal(type, MIG_MSG_PAGES);
		assert_int_equal(len, 16 + lens[i]);
		assert_int_equal(buf[0], 7);
		assert_memory_equal(buf + 16, data, lens[i]);
	}
	/* the peer gone: EOF, as in clear */
	mig_chan_close(sv[0]);
	{
		uint32_t type, len;

		assert_int_equal(mig_wire_recv(sv[1], &type, buf, MIG_WIRE_MAX_PAYLOAD, &len),
				 -ECONNRESET);
	}
	mig_chan_close(sv[1]);
	free(data);
	free(buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bad_credentials),
		cmocka_unit_test(test_wrong_key),
		cmocka_unit_test(test_authz),
		cmocka_unit_test(test_messages),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
