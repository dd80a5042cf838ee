// SPDX-License-Identifier: MIT
/*
 * tlsref: the ceiling for a TLS migration, measured in the same run: how
 * fast one core seals 16 KiB records (TLS 1.3's largest) with the AEADs
 * TLS 1.3 offers, through GnuTLS as the engines use it. A TLS pump cannot
 * beat the slower of this and the loopback TCP rate; the ratio to it says
 * how much of the cipher's speed the engines keep.
 * Output is one `key=value` line per cipher, for bench/run.sh to parse.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>

#include "base/util.h"

#define RECORD_BYTES 16384
#define TOTAL_BYTES (256ull << 20) /* sealed per cipher and run */
#define RUNS 3                     /* the median is the figure */

static double seal_rate(gnutls_cipher_algorithm_t alg)
{
	uint8_t key[32] = { 1 }, nonce[12] = { 2 }, aad[13] = { 3 };
	static uint8_t in[RECORD_BYTES], out[RECORD_BYTES + 16];
	gnutls_datum_t k = { key, (unsigned)gnutls_cipher_get_key_size(alg) };
	gnutls_aead_cipher_hd_t h;
	double best[RUNS];

	memset(in, 0x5a, sizeof(in));
	if (gnutls_aead_cipher_init(&h, alg, &k) < 0)
		return 0;
	for (int r = 0; r < RUNS; r++) {
		uint64_t t0 = mig_now_ns();

		for (uint64_t done = 0; done < TOTAL_BYTES; done += RECORD_BYTES) {
			size_t olen = sizeof(out);

			nonce[0]++;
			if (gnutls_aead_cipher_encrypt(h, nonce, sizeof(nonce), aad,
						       sizeof(aad), 16, in, sizeof(in),
						       out, &olen) < 0) {
				gnutls_aead_cipher_deinit(h);
				return 0;
			}
		}
		best[r] = TOTAL_BYTES / ((mig_now_ns() - t0) / 1e9);
	}
	gnutls_aead_cipher_deinit(h);
	/* median of three */
	if (best[0] > best[1]) { double t = best[0]; best[0] = best[1]; best[1] = t; }
	if (best[1] > best[2]) best[1] = best[2];
	return best[0] > best[1] ? best[0] : best[1];
}

int main(void)
{
	printf("aes128gcm_bytes_per_s=%.0f\n", seal_rate(GNUTLS_CIPHER_AES_128_GCM));
	printf("aes256gcm_bytes_per_s=%.0f\n", seal_rate(GNUTLS_CIPHER_AES_256_GCM));
	printf("chacha20_bytes_per_s=%.0f\n", seal_rate(GNUTLS_CIPHER_CHACHA20_POLY1305));
	return 0;
}
