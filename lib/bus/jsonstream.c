// SPDX-License-Identifier: MIT
/* JSON value framing over a byte stream: see jsonstream.h. */
#include <string.h>

#include "bus/jsonstream.h"

void mig_jsonstream_reset(struct mig_jsonstream *s)
{
	memset(s, 0, sizeof(*s));
}

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static bool ends_bare(char c)
{
	return is_space(c) || strchr("{}[]\",:", c) != NULL;
}

/* Begin a value at byte c: returns true if that one byte is the whole value. */
static bool begin(struct mig_jsonstream *s, char c, size_t i)
{
	s->active = true;
	s->start = i;
	switch (c) {
	case '{': case '[':
		s->depth = 1;
		return false;
	case '"':
		s->in_str = true;
		return false;
	case '}': case ']': case ',': case ':':
		return true;
	default:
		s->bare = true;
		return false;
	}
}

/* Inside a string: true when c closes it. */
static bool in_string(struct mig_jsonstream *s, char c)
{
	if (s->esc)
		s->esc = false;
	else if (c == '\\')
		s->esc = true;
	else if (c == '"')
		s->in_str = false;
	return !s->in_str;
}

/* One byte of an active value: true when the value ends after it. */
static bool step(struct mig_jsonstream *s, char c)
{
	if (s->in_str)
		return in_string(s, c) && s->depth == 0;
	switch (c) {
	case '"':
		s->in_str = true;
		return false;
	case '{': case '[':
		s->depth++;
		return false;
	case '}': case ']':
		return --s->depth == 0;
	default:
		return false;
	}
}

bool mig_jsonstream_next(struct mig_jsonstream *s, const char *buf, size_t len,
			 size_t *start, size_t *end)
{
	for (size_t i = s->pos; i < len; i++) {
		char c = buf[i];
		bool done;

		if (!s->active) {
			if (is_space(c))
				continue;
			done = begin(s, c, i);
		} else if (s->bare) {
			if (ends_bare(c)) {
				/* the delimiter belongs to what follows */
				*start = s->start;
				*end = s->pos = i;
				return true;
			}
			done = false;
		} else {
			done = step(s, c);
		}
		if (done) {
			*start = s->start;
			*end = s->pos = i + 1;
			return true;
		}
	}
	s->pos = len;
	*start = s->active ? s->start : len;
	return false;
}

void mig_jsonstream_shift(struct mig_jsonstream *s, size_t n)
{
	s->pos -= n;
	if (s->active)
		s->start -= n;
}
