/* SPDX-License-Identifier: MIT */
/*
 * Event webhooks (the only user of libcurl): every event the engine emits
 * is POSTed as JSON to a URL, from a queue served by a thread of its own, so
 * a slow or dead endpoint never slows the migration. Deliveries are retried
 * a bounded number of times with backoff; failures are logged, never fatal.
 */
#ifndef MIG_NOTIFY_H
#define MIG_NOTIFY_H

struct mig_notify;

/* Start the sender thread for url (http:// or https://). NULL with errno
 * (EINVAL: not an http(s) URL). */
struct mig_notify *mig_notify_new(const char *url);
/* Queue one event (a complete JSON object as text; copied). Never blocks:
 * when the queue is full the oldest undelivered event is dropped, with a
 * warning. Events are delivered in order. */
void mig_notify_event(struct mig_notify *n, const char *json);
/* Deliver what is queued within a bounded time (a few seconds at most),
 * then stop the thread and free. NULL is a no-op. */
void mig_notify_free(struct mig_notify *n);

#endif
