// SPDX-License-Identifier: MIT
/*
 * The event history x-query-events replays: the first events and a ring
 * of the latest, as text (see bus-int.h and bus.h for why). Bus thread only.
 */
#include <stdlib.h>
#include <string.h>

#include "bus/bus-int.h"
#include "base/log.h"

#define MOD "bus"

/* Keep text (owned from here on): in head[] while it has room, else in the
 * ring, whose oldest event then goes. */
void bus_history_push(struct history *h, char *text)
{
	if (h->nhead < MIG_BUS_HISTORY_FIRST) {
		h->head[h->nhead++] = text;
		return;
	}
	if (h->ring_len == MIG_BUS_HISTORY_LAST) {
		if (!h->dropped++)
			mig_dbg(MOD, "event history full: from now on it keeps "
				"the first %u events and the latest %u",
				MIG_BUS_HISTORY_FIRST, MIG_BUS_HISTORY_LAST);
		free(h->ring[h->ring_first]);
		h->ring_first = (h->ring_first + 1) % MIG_BUS_HISTORY_LAST;
		h->ring_len--;
	}
	h->ring[(h->ring_first + h->ring_len) % MIG_BUS_HISTORY_LAST] = text;
	h->ring_len++;
}

void bus_history_free(struct history *h)
{
	for (size_t i = 0; i < h->nhead; i++)
		free(h->head[i]);
	for (size_t i = 0; i < h->ring_len; i++)
		free(h->ring[(h->ring_first + i) % MIG_BUS_HISTORY_LAST]);
	memset(h, 0, sizeof(*h));
}

/* Events are stored as text: parsed back only for the rare x-query-events. */
static void history_append_to(struct mig_json *arr, const char *text)
{
	struct mig_json *ev = mig_json_parse(text, strlen(text));

	if (ev)
		mig_json_append(arr, ev);
}

struct mig_json *bus_history_array(const struct history *h)
{
	struct mig_json *arr = mig_json_new_array();

	for (size_t i = 0; i < h->nhead; i++)
		history_append_to(arr, h->head[i]);
	for (size_t i = 0; i < h->ring_len; i++)
		history_append_to(arr, h->ring[(h->ring_first + i) %
					       MIG_BUS_HISTORY_LAST]);
	return arr;
}
