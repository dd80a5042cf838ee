// SPDX-License-Identifier: MIT
/*
 * The preempt channel: requested pages go on it, so they never wait behind
 * a background run on the main channel.
 */
#include <errno.h>
#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include "base/util.h"
#include "core/chan.h"
#include "core/wire.h"
#include "source/source-int.h"

static void *preempt_main(void *arg)
{
	struct src *s = arg;
	int fd, r;

	mig_thread_name("mig-connect");
	fd = mig_chan_connect(&s->pre_uri, CONNECT_TIMEOUT_MS);
	if (fd >= 0 && (r = src_secure(s, fd, &s->pre_uri)) < 0) {
		mig_chan_close(fd);
		fd = r;
	}
	if (fd >= 0) {
		r = src_say_hello(s, fd, MIG_ROLE_PREEMPT,
				  s->pre_resume ? MIG_HELLO_RESUME : 0);
		if (r < 0) {
			mig_chan_close(fd);
			fd = r;
		}
	}
	atomic_store(&s->pre_fd, fd);
	mig_engine_signal(&s->e);
	return NULL;
}

/* The preempt channel is connected on a thread of its own: nothing waits for
 * it until postcopy starts or a recovery needs it. */
int src_preempt_start(struct src *s, const struct mig_uri *u, bool resume)
{
	int r;

	s->pre_uri = *u;
	s->pre_resume = resume;
	s->pre_err = 0;
	atomic_store(&s->pre_fd, -EINPROGRESS);
	r = pthread_create(&s->pre_thr, NULL, preempt_main, s);
	if (r)
		return -r;
	s->pre_on = true;
	return 0;
}

/* Wait for the preempt connection; register it. 0, or -errno (also for
 * an attempt that already failed). */
int src_preempt_finish(struct src *s)
{
	int fd;

	if (!s->pre_on)
		return s->pre_err;
	/* however slow the connect, the main channel must not fall silent
	 * meanwhile, or the destination takes the link for dead */
	for (;;) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += MIG_HEARTBEAT_MS * 1000000L;
		ts.tv_sec += ts.tv_nsec / 1000000000L;
		ts.tv_nsec %= 1000000000L;
		if (pthread_timedjoin_np(s->pre_thr, NULL, &ts) != ETIMEDOUT)
			break;
		src_heartbeat(s);
	}
	s->pre_on = false;
	fd = atomic_load(&s->pre_fd);
	if (fd < 0)
		return s->pre_err = fd;
	mig_engine_set_chan(&s->e, MIG_CHAN_PREEMPT, fd);
	return 0;
}

/* During precopy: take the preempt channel as soon as it is there, so that
 * heartbeats keep it alive (it carries nothing else until postcopy). */
void src_preempt_poll(struct src *s)
{
	if (s->pre_on && atomic_load(&s->pre_fd) != -EINPROGRESS)
		src_preempt_finish(s);
}

/* The preempt channel as postcopy-preempt now says: connect it if it was
 * turned on during precopy, drop it if it was turned off. */
int src_preempt_settle(struct src *s)
{
	bool want = atomic_load(&s->preempt);
	int r = 0, fd;

	if (want && !s->pre_on && mig_engine_get_chan(&s->e, MIG_CHAN_PREEMPT) < 0)
		r = src_preempt_start(s, &s->to, false);
	if (r == 0)
		r = src_preempt_finish(s);
	if (r == 0 && !want && (fd = mig_engine_get_chan(&s->e, MIG_CHAN_PREEMPT)) >= 0) {
		mig_engine_set_chan(&s->e, MIG_CHAN_PREEMPT, -1);
		mig_chan_close(fd);
	}
	return r;
}
