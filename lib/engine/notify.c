// SPDX-License-Identifier: MIT
/*
 * Event webhooks: see notify.h. One sender thread per engine drains a
 * bounded queue with libcurl; the engine only ever appends under a mutex,
 * so a dead endpoint costs the migration nothing.
 */
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/log.h"
#include "engine/notify.h"
#include "base/util.h"

/* Events a migration emits number in the tens; 256 undelivered ones mean
 * the endpoint is gone, and the newest matter most. */
#define NOTIFY_QUEUE_MAX 256
/* Attempts per event, and the first backoff (doubled each time): a short
 * outage is ridden out, a dead endpoint is given up on within ~3 s. */
#define NOTIFY_ATTEMPTS 4
#define NOTIFY_BACKOFF_MS 200
#define NOTIFY_TIMEOUT_MS 2000
/* At the end, what is still queued gets this long, then is dropped; an
 * endpoint already failing gets one attempt per event, no backoff, so that
 * a dead one never holds the engine's exit. */
#define NOTIFY_FLUSH_MS 3000

struct mig_notify {
	char *url;
	pthread_t thr;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	char *q[NOTIFY_QUEUE_MAX];
	size_t head, len;
	bool stopping;
	bool failing;        /* the last event could not be delivered */
	uint64_t flush_deadline_ns;
};

static int post(CURL *c, const char *url, const char *json)
{
	struct curl_slist *h = curl_slist_append(NULL,
						 "Content-Type: application/json");
	long code = 0;
	CURLcode rc;

	curl_easy_reset(c);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, json);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)NOTIFY_TIMEOUT_MS);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)NOTIFY_TIMEOUT_MS);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L); /* threads: no SIGALRM */
	curl_easy_setopt(c, CURLOPT_USERAGENT, "mig/" MIG_VERSION);
	rc = curl_easy_perform(c);
	if (rc == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
	curl_slist_free_all(h);
	if (rc != CURLE_OK) {
		mig_dbg("notify", "POST %s: %s", url, curl_easy_strerror(rc));
		return -EIO;
	}
	return code >= 200 && code < 300 ? 0 : -EPROTO;
}

/* Sleep ms, unless the end of the flush window comes first; false when
 * the window is over. The cond is signalled for every new event (and at
 * free), so one timedwait is not a sleep: wait again until the time is up,
 * or the backoff would shrink to nothing while events keep coming. */
static bool backoff(struct mig_notify *n, unsigned ms)
{
	uint64_t until = mig_deadline_ns(ms), end, now;
	struct timespec ts;
	bool late;

	pthread_mutex_lock(&n->lock);
	for (;;) {
		now = mig_now_ns();
		end = n->stopping ? MIG_MIN(until, n->flush_deadline_ns) : until;
		if (now >= end)
			break;
		/* the cond waits on CLOCK_REALTIME; the deadlines are monotonic */
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += (time_t)((end - now) / 1000000000ull);
		ts.tv_nsec += (long)((end - now) % 1000000000ull);
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&n->cond, &n->lock, &ts);
	}
	late = n->stopping && mig_now_ns() >= n->flush_deadline_ns;
	pthread_mutex_unlock(&n->lock);
	return !late;
}

static void deliver(struct mig_notify *n, CURL *c, const char *json)
{
	unsigned wait = NOTIFY_BACKOFF_MS;
	bool hurry;

	pthread_mutex_lock(&n->lock);
	hurry = n->stopping && n->failing;
	pthread_mutex_unlock(&n->lock);
	for (int i = 1; i <= NOTIFY_ATTEMPTS; i++) {
		if (post(c, n->url, json) == 0) {
			n->failing = false;
			return;
		}
		if (hurry || i == NOTIFY_ATTEMPTS || !backoff(n, wait))
			break;
		wait *= 2;
	}
	pthread_mutex_lock(&n->lock);
	n->failing = true;
	pthread_mutex_unlock(&n->lock);
	mig_warn("notify", "could not deliver an event to %s; dropped it", n->url);
}

static char *take(struct mig_notify *n)
{
	char *json = NULL;

	pthread_mutex_lock(&n->lock);
	while (!n->len && !n->stopping)
		pthread_cond_wait(&n->cond, &n->lock);
	if (n->len && !(n->stopping && mig_now_ns() > n->flush_deadline_ns)) {
		json = n->q[n->head];
		n->head = (n->head + 1) % NOTIFY_QUEUE_MAX;
		n->len--;
	}
	pthread_mutex_unlock(&n->lock);
	return json;
}

static void *sender(void *arg)
{
	struct mig_notify *n = arg;
	CURL *c = curl_easy_init();
	char *json;

	mig_thread_name("mig-notify");
	while ((json = take(n))) {
		if (c)
			deliver(n, c, json);
		free(json);
	}
	if (c)
		curl_easy_cleanup(c);
	return NULL;
}

struct mig_notify *mig_notify_new(const char *url)
{
	struct mig_notify *n;
	int r;

	if (!url || (strncmp(url, "http://", 7) && strncmp(url, "https://", 8))) {
		errno = EINVAL;
		return NULL;
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		errno = ENOMEM;
		return NULL;
	}
	n = calloc(1, sizeof(*n));
	if (!n || !(n->url = strdup(url))) {
		free(n);
		errno = ENOMEM;
		return NULL;
	}
	pthread_mutex_init(&n->lock, NULL);
	pthread_cond_init(&n->cond, NULL);
	r = pthread_create(&n->thr, NULL, sender, n);
	if (r) {
		free(n->url);
		free(n);
		errno = r;
		return NULL;
	}
	return n;
}

void mig_notify_event(struct mig_notify *n, const char *json)
{
	char *copy = strdup(json);

	if (!copy)
		return;
	pthread_mutex_lock(&n->lock);
	if (n->len == NOTIFY_QUEUE_MAX) {
		free(n->q[n->head]);
		n->head = (n->head + 1) % NOTIFY_QUEUE_MAX;
		n->len--;
		mig_warn("notify", "webhook %s is behind: dropped an old event",
			 n->url);
	}
	n->q[(n->head + n->len) % NOTIFY_QUEUE_MAX] = copy;
	n->len++;
	pthread_cond_signal(&n->cond);
	pthread_mutex_unlock(&n->lock);
}

void mig_notify_free(struct mig_notify *n)
{
	if (!n)
		return;
	pthread_mutex_lock(&n->lock);
	n->stopping = true;
	n->flush_deadline_ns = mig_deadline_ns(NOTIFY_FLUSH_MS);
	pthread_cond_broadcast(&n->cond);
	pthread_mutex_unlock(&n->lock);
	pthread_join(n->thr, NULL);
	if (n->len)
		mig_warn("notify", "could not deliver %zu event(s) to %s before "
			 "exiting; dropped them", n->len, n->url);
	while (n->len) {
		free(n->q[n->head]);
		n->head = (n->head + 1) % NOTIFY_QUEUE_MAX;
		n->len--;
	}
	pthread_cond_destroy(&n->cond);
	pthread_mutex_destroy(&n->lock);
	free(n->url);
	free(n);
}
