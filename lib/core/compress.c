// SPDX-License-Identifier: MIT
/*
 * LZ4 block compression of page runs (see compress.h). The only file that
 * includes <lz4.h>: LZ4's int-sized lengths stop here.
 */
#include <errno.h>
#include <limits.h>

#include <lz4.h>

#include "core/compress.h"

size_t mig_compress_bound(size_t len)
{
	if (len > LZ4_MAX_INPUT_SIZE)
		return 0;
	return (size_t)LZ4_compressBound((int)len);
}

size_t mig_compress(const void *src, size_t len, void *dst, size_t cap)
{
	int n;

	if (len == 0 || len > LZ4_MAX_INPUT_SIZE)
		return 0;
	if (cap > INT_MAX)
		cap = INT_MAX;
	n = LZ4_compress_default(src, dst, (int)len, (int)cap);
	/* no gain: the raw run is cheaper for both sides */
	if (n <= 0 || (size_t)n >= len)
		return 0;
	return (size_t)n;
}

int mig_decompress(const void *src, size_t clen, void *dst, size_t dlen)
{
	int n;

	if (clen == 0 || clen > INT_MAX || dlen > INT_MAX)
		return -EBADMSG;
	/* _safe never writes past dlen; a block that expands to fewer bytes
	 * would leave stale data in the rest of the run, so it is corrupt too */
	n = LZ4_decompress_safe(src, dst, (int)clen, (int)dlen);
	if (n < 0 || (size_t)n != dlen)
		return -EBADMSG;
	return 0;
}
