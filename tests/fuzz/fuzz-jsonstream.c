// SPDX-License-Identifier: MIT
/*
 * libFuzzer harness: the bus's JSON framing (jsonstream.c) and each framed
 * value through the parser (json.c), as the bus server and the QMP client
 * use them. The first input byte seeds how the rest is cut into reads;
 * the framing of those reads must give the same values as the whole input
 * scanned at once (a message split across writes is the same message).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bus/jsonstream.h"
#include "core/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct values {
	char *text; /* every value, each followed by a NUL */
	size_t len;
};

static void keep(struct values *v, const char *s, size_t n)
{
	struct mig_json *j;

	v->text = realloc(v->text, v->len + n + 1);
	if (!v->text)
		abort();
	memcpy(v->text + v->len, s, n);
	v->text[v->len + n] = '\0';
	v->len += n + 1;
	j = mig_json_parse(s, n);
	mig_json_free(j);
}

/* Frame the input as it arrives in reads of up to chunk bytes (0: all at
 * once), dropping consumed bytes the way session.c and qmp.c do. */
static void frame(const char *in, size_t size, unsigned seed, struct values *v)
{
	char *buf = malloc(size + 1);
	size_t len = 0, fed = 0, start, end;
	struct mig_jsonstream s;

	if (!buf)
		abort();
	mig_jsonstream_reset(&s);
	while (fed < size) {
		size_t n = seed ? 1 + (seed = seed * 1103515245u + 12345u) % 17 : size;

		n = n < size - fed ? n : size - fed;
		memcpy(buf + len, in + fed, n);
		len += n;
		fed += n;
		while (mig_jsonstream_next(&s, buf, len, &start, &end)) {
			if (start >= end || end > len)
				abort();
			keep(v, buf + start, end - start);
			memmove(buf, buf + end, len - end);
			len -= end;
			mig_jsonstream_reset(&s);
		}
		if (start > len)
			abort();
		memmove(buf, buf + start, len - start);
		len -= start;
		mig_jsonstream_shift(&s, start);
	}
	free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct values whole = { 0 }, split = { 0 };

	if (size < 1)
		return 0;
	frame((const char *)data + 1, size - 1, 0, &whole);
	frame((const char *)data + 1, size - 1, data[0] | 1u, &split);
	if (whole.len != split.len ||
	    (whole.len && memcmp(whole.text, split.text, whole.len)))
		abort();
	free(whole.text);
	free(split.text);
	return 0;
}
