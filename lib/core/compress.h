/* SPDX-License-Identifier: MIT */
/*
 * LZ4 compression of page runs (the only user of liblz4). Pays only on links
 * slower than LZ4 itself (~0.7-3.7 GB/s here), so it is off by default.
 */
#ifndef MIG_COMPRESS_H
#define MIG_COMPRESS_H

#include <stddef.h>

/* Worst-case compressed size of len input bytes. */
size_t mig_compress_bound(size_t len);
/* Compress src into dst (cap >= bound): compressed length, or 0 when the
 * data does not shrink (send it raw then). */
size_t mig_compress(const void *src, size_t len, void *dst, size_t cap);
/* Decompress exactly dlen bytes: 0, or -EBADMSG if the block is corrupt or
 * does not expand to exactly dlen bytes. */
int mig_decompress(const void *src, size_t clen, void *dst, size_t dlen);

#endif
