/* SPDX-License-Identifier: MIT */
/*
 * Finding where one JSON value ends in a byte stream, without parsing it.
 * QMP peers may send several requests in one write, split one across many,
 * and need not end them with a newline, so the bus frames messages by
 * tracking brace/bracket depth, strings and escapes. The value is then
 * handed whole to the real parser, which judges whether it is valid.
 */
#ifndef MIG_JSONSTREAM_H
#define MIG_JSONSTREAM_H

#include <stdbool.h>
#include <stddef.h>

struct mig_jsonstream {
	size_t pos;    /* next byte to scan */
	size_t start;  /* first byte of the pending value (if active) */
	unsigned depth;
	bool active;   /* inside a value */
	bool in_str;
	bool esc;
	bool bare;     /* a top-level scalar (number, literal, garbage) */
};

void mig_jsonstream_reset(struct mig_jsonstream *s);

/* Scan buf[0, len): the same buffer each call, grown only at its end. True
 * when buf[*start, *end) is one complete top-level value: the caller then
 * drops buf[0, *end) and resets the scanner. False when more bytes are
 * needed; then *start is where the pending value begins (len if none has
 * begun: everything before it is whitespace and can be dropped). A
 * top-level scalar ends at the first whitespace or structural character;
 * a stray '}' or ']' is a one-byte value (for the parser to reject). */
bool mig_jsonstream_next(struct mig_jsonstream *s, const char *buf, size_t len,
			 size_t *start, size_t *end);
/* The caller dropped the first n bytes of the buffer (n <= the *start of
 * the last call that returned false): keep scanning where we were. */
void mig_jsonstream_shift(struct mig_jsonstream *s, size_t n);

#endif
