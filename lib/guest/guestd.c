// SPDX-License-Identifier: MIT
/*
 * mig-guest, the guest-memory process: see guestd.h, and ctl.h for the
 * protocol it serves.
 *
 * Threads: one control thread (the caller of mig_guestd_run) serves every
 * client with poll(); N vCPU threads run the workload. The control thread
 * never blocks on a vCPU: STOP and VERIFY are answered once the last vCPU
 * to park wakes it through an eventfd, because on an incoming guest a vCPU
 * can sit in a userfault for as long as no engine serves it, and a restarted
 * engine must still be able to attach meanwhile. For the same reason the
 * control thread never reads RAM that may be missing. DIGEST and POKE wait
 * for the parked vCPUs the same way.
 *
 * Dirty tracking (DIRTY_START) is a second userfaultfd, in async
 * write-protect mode, created here because a uffd belongs to the mm of the
 * process that creates it; the engine reads it through /proc/PID/pagemap
 * (dirty.h) and never needs the fd.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "base/bytes.h"
#include "base/log.h"
#include "base/util.h"
#include "core/digest.h"
#include "core/uffd.h"
#include "guest/ctl.h"
#include "guest/guestd.h"
#include "guest/workload.h"

/* Concurrent control connections: an engine plus a handful of mig-guest
 * info/verify runs and scripts; more are refused, not queued. */
#define MAX_CLIENTS 32
#define LISTEN_BACKLOG 16
/* An incoming guest that no engine claims within this long was orphaned by
 * an engine that died right after spawning it. */
#define MIG_GUEST_UNCLAIMED_MS 30000u


enum pending { PEND_NONE, PEND_STOP, PEND_VERIFY, PEND_DIGEST, PEND_POKE };

struct client {
	int fd;               /* -1: free slot */
	pid_t pid;            /* SO_PEERCRED at accept */
	enum pending pending; /* answered once every vCPU is parked */
	uint32_t seq;         /* of the pending request */
	uint64_t page;        /* PEND_POKE: which */
};

struct guestd;

struct vcpu {
	struct guestd *gd;
	unsigned idx;
	pthread_t tid;
};

struct guestd {
	const struct mig_guestd_opts *o;
	uint64_t ram_bytes;
	uint8_t *ram;
	int memfd, uffd, lfd, sigfd, evfd, ready_fd;
	int wpfd;       /* dirty tracking: async write-protect uffd, or -1 */
	bool incoming;  /* RAM registered, pages due */
	bool continued; /* CONT seen: LOAD_STATE is refused from then on */
	bool running;   /* as the clients see it: STOP / CONT */
	bool done;      /* leave the loop */
	struct mig_workload *wl; /* NULL on an incoming guest until LOAD_STATE */
	struct vcpu vc[MIG_WORKLOAD_MAX_VCPUS];
	unsigned nthreads;
	/* vCPU parking: stop is read lock-free before every page write;
	 * parked, quit and the cond are under lock. */
	atomic_bool stop;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned parked;
	bool quit;
	struct client cl[MAX_CLIENTS];
	int holder;     /* slot holding the claim, -1 none */
	struct mig_guest_record rec; /* the migration we belong to */
	bool claimed;   /* some engine ever held the claim */
	uint64_t t_start_ns;
	struct mig_sock_owner sock; /* so we unlink only our own socket */
	sigset_t oldmask;
	bool masked;
};

/* --- vCPUs ------------------------------------------------------------------ */

static void wake_control(struct guestd *gd)
{
	uint64_t one = 1;

	if (write(gd->evfd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		mig_err("guest", "eventfd write: %s", strerror(errno));
}

static void *vcpu_main(void *arg)
{
	struct vcpu *v = arg;
	struct guestd *gd = v->gd;

	pthread_mutex_lock(&gd->lock);
	while (!gd->quit) {
		if (!atomic_load(&gd->stop)) {
			pthread_mutex_unlock(&gd->lock);
			mig_workload_run(gd->wl, v->idx, &gd->stop);
			pthread_mutex_lock(&gd->lock);
			continue;
		}
		if (++gd->parked == gd->nthreads)
			wake_control(gd);
		while (atomic_load(&gd->stop) && !gd->quit)
			pthread_cond_wait(&gd->cond, &gd->lock);
		gd->parked--;
	}
	pthread_mutex_unlock(&gd->lock);
	return NULL;
}

/* Park (true) or release (false) the vCPUs; does not wait. */
static void set_stop(struct guestd *gd, bool stop)
{
	pthread_mutex_lock(&gd->lock);
	if (atomic_load(&gd->stop) != stop) {
		atomic_store(&gd->stop, stop);
		if (!stop)
			pthread_cond_broadcast(&gd->cond);
	}
	pthread_mutex_unlock(&gd->lock);
}

static bool all_parked(struct guestd *gd)
{
	bool r;

	pthread_mutex_lock(&gd->lock);
	r = atomic_load(&gd->stop) && gd->parked == gd->nthreads;
	pthread_mutex_unlock(&gd->lock);
	return r;
}

/* Tell every vCPU to leave: a running one does so before its next page
 * write, a parked one at once. One waiting in a userfault sees it only
 * once something wakes it (teardown_vcpus). */
static void vcpus_tell_quit(struct guestd *gd)
{
	pthread_mutex_lock(&gd->lock);
	gd->quit = true;
	atomic_store(&gd->stop, true);
	pthread_cond_broadcast(&gd->cond);
	pthread_mutex_unlock(&gd->lock);
}

/* After the last vCPU is joined. */
static void vcpus_forget(struct guestd *gd)
{
	gd->nthreads = 0;
	gd->parked = 0;
	gd->quit = false;
}

/* For vCPUs that never ran (a reload before the first CONT, a failed
 * start): none can be in a userfault. Teardown joins with teardown_vcpus. */
static void vcpus_join(struct guestd *gd)
{
	vcpus_tell_quit(gd);
	for (unsigned i = 0; i < gd->nthreads; i++)
		pthread_join(gd->vc[i].tid, NULL);
	vcpus_forget(gd);
}

/* Start one thread per vCPU of gd->wl; they run or park as gd->stop says. */
static int vcpus_start(struct guestd *gd)
{
	unsigned n = mig_workload_threads(gd->wl);

	for (unsigned i = 0; i < n; i++) {
		int r;

		gd->vc[i] = (struct vcpu){ .gd = gd, .idx = i };
		/* nthreads first: a vCPU that parks compares against it */
		pthread_mutex_lock(&gd->lock);
		gd->nthreads = i + 1;
		pthread_mutex_unlock(&gd->lock);
		r = pthread_create(&gd->vc[i].tid, NULL, vcpu_main, &gd->vc[i]);
		if (r) {
			mig_err("guest", "starting vcpu %u: %s", i, strerror(r));
			pthread_mutex_lock(&gd->lock);
			gd->nthreads = i;
			pthread_mutex_unlock(&gd->lock);
			vcpus_join(gd);
			return -r;
		}
	}
	return 0;
}

/* --- setup ------------------------------------------------------------------- */

static int ram_open(struct guestd *gd)
{
	gd->memfd = memfd_create("mig-guest-ram", MFD_CLOEXEC);
	if (gd->memfd < 0) {
		mig_err("guest", "memfd_create: %s", strerror(errno));
		return -errno;
	}
	if (ftruncate(gd->memfd, (off_t)gd->ram_bytes) < 0) {
		mig_err("guest", "sizing RAM to %" PRIu64 " bytes: %s",
			gd->ram_bytes, strerror(errno));
		return -errno;
	}
	gd->ram = mmap(NULL, gd->ram_bytes, PROT_READ | PROT_WRITE, MAP_SHARED,
		       gd->memfd, 0);
	if (gd->ram == MAP_FAILED) {
		gd->ram = NULL;
		mig_err("guest", "mapping RAM: %s", strerror(errno));
		return -errno;
	}
	return 0;
}

/* Incoming: every page faults until an engine places it. Registered before
 * any vCPU exists, and nothing here touches RAM afterwards. */
static int uffd_setup(struct guestd *gd)
{
	int r = mig_uffd_open(UFFD_FEATURE_MISSING_SHMEM);

	if (r < 0) {
		mig_err("guest", "userfaultfd: %s", mig_uffd_strerror(r));
		return r;
	}
	gd->uffd = r;
	r = mig_uffd_register_missing(gd->uffd, gd->ram, gd->ram_bytes);
	if (r < 0)
		mig_err("guest", "registering RAM with userfaultfd: %s",
			mig_uffd_strerror(r));
	return r;
}

/*
 * Unregister all of RAM from the missing-page uffd, then wake every thread
 * waiting in a fault on it. The unregister wakes waiters itself, but the
 * kernel does so before it detaches the uffd from the VMA, and only the
 * mmap lock it holds orders the two against faults: a fault taken under
 * the per-VMA lock (shmem faults are, on current kernels) still sees the
 * uffd in that window, queues after the wake and sleeps on a range nobody
 * serves any more. Detaching write-locks the VMA, which waits until such a
 * fault has queued and let go of the VMA; so once the ioctl has returned no
 * new waiter can appear, and one UFFDIO_WAKE (it needs no registration:
 * it wakes the uffd's queues by address) releases the stragglers. A woken
 * thread retries its fault, which now just allocates a zero page.
 * 0 or the unregister's -errno; the wake is tried either way.
 */
static int ram_unregister(struct guestd *gd)
{
	int r = mig_uffd_unregister(gd->uffd, gd->ram, gd->ram_bytes);
	int w = mig_uffd_wake(gd->uffd, (uint64_t)(uintptr_t)gd->ram, gd->ram_bytes);

	if (w < 0)
		mig_warn("guest", "UFFDIO_WAKE: %s", mig_uffd_strerror(w));
	return r;
}

static int sock_bind(struct guestd *gd, const struct sockaddr_un *sa)
{
	mode_t old;
	int r;

	/* umask rather than chmod after bind: no window where another user
	 * could connect. Single-threaded here, so the process-wide umask is
	 * ours to borrow. */
	old = umask(0177);
	r = bind(gd->lfd, (const struct sockaddr *)sa, sizeof(*sa));
	umask(old);
	if (r < 0)
		return -errno;
	mig_sock_own(sa->sun_path, &gd->sock);
	return listen(gd->lfd, LISTEN_BACKLOG) < 0 ? -errno : 0;
}

static int sock_listen(struct guestd *gd)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	const char *path = gd->o->ctl_path;
	int r;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		mig_err("guest", "control socket path is too long (max %zu bytes): %s",
			sizeof(sa.sun_path) - 1, path);
		return -ENAMETOOLONG;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	r = mig_sock_claim(path);
	if (r == -EADDRINUSE)
		mig_err("guest", "control socket %s is in use", path);
	else if (r == -EEXIST)
		mig_err("guest", "%s exists and is not a socket", path);
	else if (r < 0)
		mig_err("guest", "control socket %s: %s", path, strerror(-r));
	if (r < 0)
		return r;
	gd->lfd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (gd->lfd < 0) {
		mig_err("guest", "socket: %s", strerror(errno));
		return -errno;
	}
	r = sock_bind(gd, &sa);
	if (r < 0)
		mig_err("guest", "listening on %s: %s", path, strerror(-r));
	return r;
}

/* SIGTERM/SIGINT arrive on a signalfd: a clean stop through the loop. The
 * mask is set before any vCPU starts so every thread inherits it. */
static int signals_setup(struct guestd *gd)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	/* an inherited SIG_IGN would discard them before the signalfd sees them */
	signal(SIGTERM, SIG_DFL);
	signal(SIGINT, SIG_DFL);
	if (pthread_sigmask(SIG_BLOCK, &set, &gd->oldmask) != 0)
		return -EINVAL;
	gd->masked = true;
	gd->sigfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	if (gd->sigfd < 0) {
		mig_err("guest", "signalfd: %s", strerror(errno));
		return -errno;
	}
	gd->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (gd->evfd < 0) {
		mig_err("guest", "eventfd: %s", strerror(errno));
		return -errno;
	}
	return 0;
}

static int workload_setup(struct guestd *gd)
{
	const char *text = gd->o->workload ? gd->o->workload : "ab";
	struct mig_workload_spec spec;
	struct mig_workload_state st;

	if (mig_workload_parse(text, &spec) < 0) {
		mig_err("guest", "unknown workload '%s' (%s)", text,
			mig_workload_names());
		return -EINVAL;
	}
	if (gd->o->incoming)
		return 0; /* the state blob brings the workload */
	mig_workload_state_init(&st, &spec, gd->ram_bytes, gd->o->vcpus);
	gd->wl = mig_workload_new(&st, gd->ram);
	if (!gd->wl) {
		mig_err("guest", "workload %s: %s", text, strerror(errno));
		return -errno;
	}
	mig_workload_fill(gd->wl);
	gd->running = true;
	return 0;
}

/* --- replies ---------------------------------------------------------------- */

static void tracking_stop(struct guestd *gd);

static void record_clear(struct guestd *gd)
{
	gd->rec = (struct mig_guest_record){ .phase = MIG_GUEST_UNBOUND };
}

/*
 * The engine holding the claim went away (it closed, or died). From
 * switchover on the guest waits, as it is, for the next engine: its RAM and
 * its record are the truth and a restarted engine takes over. Before
 * switchover the migration has failed with its engine: the guest is whole
 * on the source, which runs on; an incoming guest holds nothing anyone
 * needs and exits, so nothing is left behind.
 */
static void engine_gone(struct guestd *gd, pid_t pid)
{
	bool early = gd->rec.phase < MIG_GUEST_SWITCHED;
	char id[37];

	mig_info("guest", "engine pid %d detached", (int)pid);
	if (!early || (gd->rec.phase == MIG_GUEST_UNBOUND && !gd->incoming))
		return;
	if (gd->incoming) {
		mig_warn("guest", "engine gone before switchover: the migration "
			 "failed, nothing here to keep; exiting");
		gd->done = true;
		return;
	}
	mig_uuid_format(gd->rec.uuid, id);
	mig_warn("guest", "engine gone before switchover: migration %s failed; "
		 "the guest runs on here", id);
	tracking_stop(gd);
	record_clear(gd);
	gd->running = true;
}

static void client_close(struct guestd *gd, int ci)
{
	struct client *c = &gd->cl[ci];
	pid_t pid = c->pid;
	bool holder = gd->holder == ci;

	if (c->fd < 0)
		return;
	if (holder)
		gd->holder = -1;
	close(c->fd);
	*c = (struct client){ .fd = -1 };
	if (holder && !gd->done) /* not at our own shutdown */
		engine_gone(gd, pid);
}

static void reply_fds(struct guestd *gd, int ci, uint16_t op, uint32_t seq,
		      int status, const void *pl, size_t plen, const int *fds,
		      int nfds)
{
	/* non-blocking: a client that does not read its replies is dropped
	 * rather than allowed to stall the control thread */
	int r = mig_ctl_send(gd->cl[ci].fd, op, seq, status, pl, plen, fds, nfds);

	if (r < 0) {
		mig_dbg("guest", "reply to pid %d: %s", (int)gd->cl[ci].pid,
			strerror(-r));
		client_close(gd, ci);
	}
}

static void reply(struct guestd *gd, int ci, const struct mig_ctl_hdr *req,
		  int status, const void *pl, size_t plen)
{
	reply_fds(gd, ci, req->op, req->seq, status, pl, plen, NULL, 0);
}

static void reply_text(struct guestd *gd, int ci, uint16_t op, uint32_t seq,
		       int status, const char *text)
{
	reply_fds(gd, ci, op, seq, status, text, strlen(text), NULL, 0);
}

/* --- requests ---------------------------------------------------------------- */

static void do_info(struct guestd *gd, int ci, const struct mig_ctl_hdr *h)
{
	struct mig_guest_info in = {
		.pid = getpid(),
		.ram_bytes = gd->ram_bytes,
		.ram_base = (uint64_t)(uintptr_t)gd->ram,
		.incoming = gd->incoming,
		.running = gd->running,
		.attached = gd->holder >= 0,
		.tracking = gd->wpfd >= 0,
		.rec = gd->rec,
	};
	uint8_t pl[MIG_CTL_INFO_BYTES];

	if (gd->wl) {
		snprintf(in.workload, sizeof(in.workload), "%s",
			 mig_workload_spec_text(gd->wl));
		in.vcpus = mig_workload_vcpus(gd->wl);
		in.progress = mig_workload_progress(gd->wl);
	}
	mig_ctl_info_pack(pl, &in);
	reply(gd, ci, h, 0, pl, sizeof(pl));
}

/* A holder whose engine just died may not have been noticed yet (its
 * hangup waits in this same poll round): its successor must not be refused
 * because of it. */
static void drop_dead_holder(struct guestd *gd)
{
	struct pollfd p;

	if (gd->holder < 0)
		return;
	p = (struct pollfd){ .fd = gd->cl[gd->holder].fd, .events = POLLRDHUP };
	if (poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLERR | POLLRDHUP)))
		client_close(gd, gd->holder);
}

static void do_attach(struct guestd *gd, int ci, const struct mig_ctl_hdr *h)
{
	uint8_t pl[4];

	drop_dead_holder(gd);
	if (gd->holder >= 0 && gd->holder != ci) {
		mig_put_le32(pl, (uint32_t)gd->cl[gd->holder].pid);
		reply(gd, ci, h, -EBUSY, pl, sizeof(pl));
		return;
	}
	if (gd->holder != ci)
		mig_info("guest", "engine pid %d attached", (int)gd->cl[ci].pid);
	gd->holder = ci;
	gd->claimed = true;
	reply(gd, ci, h, 0, NULL, 0);
}

/* Needs the claim: -EACCES if nobody holds it, -EBUSY if another does. */
static int need_claim(const struct guestd *gd, int ci)
{
	return gd->holder == ci ? 0 : gd->holder < 0 ? -EACCES : -EBUSY;
}

/* STOP/CONT/LOAD_STATE: by the claim holder, or by anyone when unclaimed. */
static int may_steer(const struct guestd *gd, int ci)
{
	return gd->holder < 0 || gd->holder == ci ? 0 : -EBUSY;
}

static void do_get_fds(struct guestd *gd, int ci, const struct mig_ctl_hdr *h)
{
	int fds[2] = { gd->memfd, gd->uffd };
	int nfds = gd->incoming && gd->uffd >= 0 ? 2 : 1;
	int r = need_claim(gd, ci);
	uint8_t pl[4];

	if (r < 0) {
		reply(gd, ci, h, r, NULL, 0);
		return;
	}
	mig_put_le32(pl, (uint32_t)nfds);
	/* the kernel duplicates them: we keep our own references */
	reply_fds(gd, ci, h->op, h->seq, 0, pl, sizeof(pl), fds, nfds);
}

static uint16_t pending_op(enum pending p)
{
	switch (p) {
	case PEND_STOP: return MIG_CTL_STOP;
	case PEND_VERIFY: return MIG_CTL_VERIFY;
	case PEND_DIGEST: return MIG_CTL_DIGEST;
	case PEND_POKE: return MIG_CTL_POKE;
	case PEND_NONE: break;
	}
	return 0;
}

/* One STOP, VERIFY, DIGEST or POKE waits per client. A client that sends another gave
 * up on the first (its reply timed out): that one is cancelled, and the
 * client drops the late reply by its seq. */
static void set_pending(struct guestd *gd, int ci, enum pending p, uint32_t seq)
{
	struct client *c = &gd->cl[ci];

	if (c->pending != PEND_NONE) {
		enum pending old = c->pending;

		c->pending = PEND_NONE;
		reply_text(gd, ci, pending_op(old), c->seq, -ECANCELED, "");
		if (c->fd < 0)
			return;
	}
	c->pending = p;
	c->seq = seq;
}

static void do_stop(struct guestd *gd, int ci, const struct mig_ctl_hdr *h)
{
	int r = may_steer(gd, ci);

	if (r < 0) {
		reply(gd, ci, h, r, NULL, 0);
		return;
	}
	gd->running = false;
	set_pending(gd, ci, PEND_STOP, h->seq);
}

/*
 * The guest never runs twice. A source guest whose state went to the
 * destination never runs here again, whoever asks: only UNBIND by the engine
 * that saw the destination never take it, or the operator's ABANDON, lifts
 * that. An incoming guest whose pages are still arriving runs only when its
 * engine says the source has committed to it.
 */
static int cont_allowed(struct guestd *gd, int ci)
{
	char id[37];

	if (gd->rec.phase < MIG_GUEST_SWITCHED)
		return 0;
	if (gd->rec.side == MIG_SIDE_DEST)
		return gd->rec.phase == MIG_GUEST_COMPLETED || gd->holder == ci ?
		       0 : -EPERM;
	mig_uuid_format(gd->rec.uuid, id);
	mig_warn("guest", "CONT from pid %d refused: the guest was handed over "
		 "to the destination in migration %s", (int)gd->cl[ci].pid, id);
	return -EPERM;
}

static void do_cont(struct guestd *gd, int ci, const struct mig_ctl_hdr *h)
{
	int r = may_steer(gd, ci);

	if (r == 0 && !gd->wl) {
		mig_warn("guest", "CONT before LOAD_STATE: no workload to run");
		r = -EINVAL;
	}
	if (r == 0)
		r = cont_allowed(gd, ci);
	if (r < 0) {
		reply(gd, ci, h, r, NULL, 0);
		return;
	}
	/* a STOP still waiting for its vCPUs (unclaimed guest, two clients)
	 * is overtaken */
	for (int i = 0; i < MAX_CLIENTS; i++) {
		if (gd->cl[i].fd >= 0 && gd->cl[i].pending == PEND_STOP) {
			gd->cl[i].pending = PEND_NONE;
			reply_text(gd, i, MIG_CTL_STOP, gd->cl[i].seq,
				   -ECANCELED, "");
		}
	}
	gd->running = true;
	gd->continued = true;
	reply(gd, ci, h, 0, NULL, 0);
}

static int save_state(struct guestd *gd, int ci, int *blob_fd, size_t *len)
{
	struct mig_workload_state st;
	uint8_t *blob;
	int r = need_claim(gd, ci);

	if (r < 0)
		return r;
	if (!gd->wl)
		return -EINVAL;
	if (gd->running || !all_parked(gd))
		return -EBUSY;
	mig_workload_save(gd->wl, &st);
	r = mig_workload_state_encode(&st, &blob, len);
	if (r < 0)
		return r;
	r = mig_ctl_blob_fd(blob, *len);
	free(blob);
	if (r < 0)
		return r;
	*blob_fd = r;
	/* from the moment the state can leave, it may run there: not here */
	if (gd->rec.phase == MIG_GUEST_MIGRATING && gd->rec.side == MIG_SIDE_SOURCE)
		gd->rec.phase = MIG_GUEST_SWITCHED;
	return 0;
}

static void do_save_state(struct guestd *gd, int ci, const struct mig_ctl_hdr *h)
{
	uint8_t pl[4];
	size_t len = 0;
	int fd = -1;
	int r = save_state(gd, ci, &fd, &len);

	if (r < 0) {
		mig_dbg("guest", "SAVE_STATE: %s", strerror(-r));
		reply(gd, ci, h, r, NULL, 0);
		return;
	}
	mig_put_le32(pl, (uint32_t)len);
	reply_fds(gd, ci, h->op, h->seq, 0, pl, sizeof(pl), &fd, 1);
	close(fd);
}

/* Decode first, then swap: a bad blob leaves the guest exactly as it was. */
static int load_state(struct guestd *gd, const uint8_t *pl, size_t plen,
		      const int *fds, int nfds)
{
	struct mig_workload_state st;
	struct mig_workload *wl;
	uint8_t *blob;
	int r;

	if (plen != 4 || nfds != 1)
		return -EINVAL;
	r = mig_ctl_blob_read(fds[0], mig_get_le32(pl), &blob);
	if (r < 0)
		return r;
	r = mig_workload_state_decode(blob, mig_get_le32(pl), gd->ram_bytes, &st);
	free(blob);
	if (r < 0)
		return r;
	wl = mig_workload_new(&st, gd->ram);
	if (!wl)
		return -errno;
	/* a reload before the first CONT: the old vCPUs are parked */
	vcpus_join(gd);
	mig_workload_free(gd->wl);
	gd->wl = wl;
	atomic_store(&gd->stop, true); /* they start parked, until CONT */
	r = vcpus_start(gd);
	if (r == 0)
		mig_info("guest", "state loaded: workload %s, %u vcpus", st.spec.text,
			 st.vcpus);
	if (r == 0 && gd->rec.phase == MIG_GUEST_MIGRATING)
		gd->rec.phase = MIG_GUEST_SWITCHED;
	return r;
}

static void do_load_state(struct guestd *gd, int ci, const struct mig_ctl_hdr *h,
			  const uint8_t *pl, const int *fds, int nfds)
{
	int r = may_steer(gd, ci);

	if (r == 0 && (!gd->o->incoming || gd->continued))
		r = -EINVAL; /* only into a guest that never ran here */
	if (r == 0)
		r = load_state(gd, pl, h->len, fds, nfds);
	/* a malformed blob is worth a warning; a request out of turn is the
	 * client's to report */
	if (r == -EBADMSG)
		mig_warn("guest", "LOAD_STATE from pid %d: malformed state blob "
			 "refused", (int)gd->cl[ci].pid);
	else if (r < 0)
		mig_dbg("guest", "LOAD_STATE from pid %d refused: %s",
			(int)gd->cl[ci].pid, strerror(-r));
	reply(gd, ci, h, r, NULL, 0);
}

/* Pages of RAM not in the memfd yet (never placed): SEEK_HOLE sees them
 * without touching the mapping, so this never faults. */
static int64_t count_missing(struct guestd *gd, uint64_t *first)
{
	off_t off = 0, end = (off_t)gd->ram_bytes;
	int64_t missing = 0;

	*first = UINT64_MAX;
	while (off < end) {
		off_t hole = lseek(gd->memfd, off, SEEK_HOLE), data;

		if (hole < 0)
			return -errno;
		if (hole >= end)
			break;
		data = lseek(gd->memfd, hole, SEEK_DATA);
		if (data < 0 && errno != ENXIO)
			return -errno;
		if (data < 0 || data > end)
			data = end;
		if (*first == UINT64_MAX)
			*first = (uint64_t)hole / MIG_PAGE_SIZE;
		missing += (data - hole) / MIG_PAGE_SIZE;
		off = data;
	}
	return missing;
}

static void do_incoming_done(struct guestd *gd, int ci, const struct mig_ctl_hdr *h)
{
	uint64_t first;
	int64_t missing;
	int r = need_claim(gd, ci);

	if (r < 0 || !gd->incoming) { /* done twice: already so */
		reply(gd, ci, h, r, NULL, 0);
		return;
	}
	/* an engine may legitimately leave zero pages unplaced: after the
	 * unregister they read as zero. Say so, for whoever debugs it. */
	missing = count_missing(gd, &first);
	if (missing > 0)
		mig_info("guest", "incoming done with %" PRId64 " pages never "
			 "placed (first: page %" PRIu64 "): they read as zero",
			 missing, first);
	/* and wakes any vCPU still waiting in a fault: after the close
	 * nothing could (an engine may keep the uffd open) */
	r = ram_unregister(gd);
	if (r < 0) {
		mig_err("guest", "UFFDIO_UNREGISTER: %s", mig_uffd_strerror(r));
		reply(gd, ci, h, r, NULL, 0);
		return;
	}
	close(gd->uffd);
	gd->uffd = -1;
	gd->incoming = false;
	if (gd->rec.phase != MIG_GUEST_UNBOUND)
		gd->rec.phase = MIG_GUEST_COMPLETED;
	mig_info("guest", "incoming done: every page present");
	reply(gd, ci, h, 0, NULL, 0);
}

/* What VERIFY can say before parking anything: nothing loaded yet, or
 * pages still missing. Missing pages are reported, not read: reading one
 * would block this thread until an engine places it, and the vCPUs might
 * never park either, waiting in the same faults. 1: go ahead and park. */
static int verify_precheck(struct guestd *gd, char *msg, size_t len)
{
	uint64_t first;
	int64_t missing;

	if (!gd->wl) {
		snprintf(msg, len, "no workload yet: the state has not been loaded");
		return -EAGAIN;
	}
	if (!gd->incoming)
		return 1;
	missing = count_missing(gd, &first);
	if (missing < 0) {
		snprintf(msg, len, "counting missing pages: %s",
			 strerror((int)-missing));
		return (int)missing;
	}
	if (missing > 0) {
		snprintf(msg, len, "incoming: %" PRId64 " pages not placed yet "
			 "(first: page %" PRIu64 ")", missing, first);
		return -EAGAIN;
	}
	return 1;
}

static void do_verify(struct guestd *gd, int ci, const struct mig_ctl_hdr *h)
{
	char msg[MIG_CTL_TEXT_MAX];
	int r = verify_precheck(gd, msg, sizeof(msg));

	if (r == 1)
		set_pending(gd, ci, PEND_VERIFY, h->seq);
	else
		reply_text(gd, ci, h->op, h->seq, r, msg);
}

/* --- the migration record ------------------------------------------------- */

/* A guest belongs to one migration at a time, and never to another. One
 * that arrived completely is free to leave again: as a source, in a new
 * migration. */
static int bind_check(const struct guestd *gd, const struct mig_guest_record *r)
{
	bool arrived = gd->rec.phase == MIG_GUEST_COMPLETED &&
		       gd->rec.side == MIG_SIDE_DEST;

	if (gd->rec.phase == MIG_GUEST_UNBOUND || (arrived && memcmp(gd->rec.uuid, r->uuid, 16)))
		return r->side == (gd->incoming ? MIG_SIDE_DEST : MIG_SIDE_SOURCE) ?
		       0 : -EINVAL;
	if (memcmp(gd->rec.uuid, r->uuid, 16))
		return -EEXIST;
	return gd->rec.side == r->side ? 0 : -EINVAL;
}

static void do_bind(struct guestd *gd, int ci, const struct mig_ctl_hdr *h,
		    const uint8_t *pl)
{
	struct mig_guest_record r;
	char id[37], have[37];
	int e = need_claim(gd, ci);

	if (e == 0)
		e = mig_ctl_bind_unpack(pl, h->len, &r) < 0 ? -EINVAL : bind_check(gd, &r);
	mig_uuid_format(r.uuid, id);
	mig_uuid_format(gd->rec.uuid, have);
	if (e == -EEXIST)
		mig_warn("guest", "engine pid %d refused: migration %s is not "
			 "ours (%s)", (int)gd->cl[ci].pid, id, have);
	if (e == 0 && (gd->rec.phase == MIG_GUEST_UNBOUND ||
		       memcmp(gd->rec.uuid, r.uuid, 16))) {
		gd->rec = r;
		gd->rec.phase = MIG_GUEST_MIGRATING;
		gd->rec.state = MIG_STATE_SETUP;
		mig_info("guest", "bound to migration %s (%s, peer %s)", id,
			 mig_side_name(r.side), r.peer);
	} else if (e == 0) {
		memcpy(gd->rec.peer, r.peer, sizeof(r.peer));
		mig_info("guest", "engine pid %d resumes migration %s (%s)",
			 (int)gd->cl[ci].pid, id, mig_guest_phase_name(gd->rec.phase));
	}
	reply(gd, ci, h, e, NULL, 0);
}

static void do_set_state(struct guestd *gd, int ci, const struct mig_ctl_hdr *h,
			 const uint8_t *pl)
{
	int e = need_claim(gd, ci);

	if (e == 0 && (h->len != 4 || mig_get_le32(pl) >= MIG_STATE__COUNT))
		e = -EINVAL;
	if (e == 0 && gd->rec.phase == MIG_GUEST_UNBOUND)
		e = -ESRCH;
	if (e == 0) {
		gd->rec.state = (enum mig_state)mig_get_le32(pl);
		/* the engine saw the destination hold every page */
		if (gd->rec.state == MIG_STATE_COMPLETED &&
		    gd->rec.phase == MIG_GUEST_SWITCHED)
			gd->rec.phase = MIG_GUEST_COMPLETED;
	}
	reply(gd, ci, h, e, NULL, 0);
}

static void do_unbind(struct guestd *gd, int ci, const struct mig_ctl_hdr *h)
{
	int e = need_claim(gd, ci);
	char id[37];

	if (e == 0 && gd->rec.phase != MIG_GUEST_UNBOUND) {
		mig_uuid_format(gd->rec.uuid, id);
		mig_info("guest", "migration %s ended before switchover: unbound", id);
		record_clear(gd);
	}
	reply(gd, ci, h, e, NULL, 0);
}

static void do_abandon(struct guestd *gd, int ci, const struct mig_ctl_hdr *h,
		       const uint8_t *pl)
{
	char id[37];
	int e = 0;

	if (h->len != 16)
		e = -EINVAL;
	else if (gd->holder >= 0)
		e = -EBUSY;
	else if (gd->rec.phase == MIG_GUEST_UNBOUND || memcmp(pl, gd->rec.uuid, 16))
		e = -ESRCH;
	else if (gd->rec.side != MIG_SIDE_SOURCE)
		e = -EINVAL;
	if (e == 0) {
		mig_uuid_format(gd->rec.uuid, id);
		mig_warn("guest", "migration %s abandoned by pid %d (%s): this "
			 "guest may run here again", id, (int)gd->cl[ci].pid,
			 mig_guest_phase_name(gd->rec.phase));
		record_clear(gd);
	}
	reply(gd, ci, h, e, NULL, 0);
}

/* --- dirty tracking, digest, poke ------------------------------------------- */

static void tracking_stop(struct guestd *gd)
{
	int r;

	if (gd->wpfd < 0)
		return;
	/* unregistering drops the write-protection with it */
	r = mig_uffd_unregister(gd->wpfd, gd->ram, gd->ram_bytes);
	if (r < 0)
		mig_warn("guest", "dirty tracking: UFFDIO_UNREGISTER: %s",
			 mig_uffd_strerror(r));
	close(gd->wpfd);
	gd->wpfd = -1;
	mig_info("guest", "dirty tracking off");
}

/* Arm: register RAM for write-protect with a WP_ASYNC uffd and protect it
 * all. From then on the first write to a page clears its protection and
 * marks it written, in the kernel, without a fault message: nobody has to
 * read this fd. WP_UNPOPULATED makes never-touched pages count too (their
 * first write would otherwise go unnoticed). */
static int tracking_start(struct guestd *gd)
{
	struct uffdio_register reg = {
		.range = { .start = (uintptr_t)gd->ram, .len = gd->ram_bytes },
		.mode = UFFDIO_REGISTER_MODE_WP,
	};
	struct uffdio_writeprotect wp = {
		.range = reg.range, .mode = UFFDIO_WRITEPROTECT_MODE_WP,
	};
	uint64_t t0 = mig_now_ns();
	int fd = mig_uffd_open(UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED);
	int r = 0;

	if (fd < 0) {
		mig_warn("guest", "dirty tracking: userfaultfd: %s",
			 mig_uffd_strerror(fd));
		return fd;
	}
	if (ioctl(fd, UFFDIO_REGISTER, &reg) < 0) {
		r = -errno;
		mig_warn("guest", "dirty tracking: UFFDIO_REGISTER (write-protect): %s",
			 strerror(errno));
	} else if (ioctl(fd, UFFDIO_WRITEPROTECT, &wp) < 0) {
		r = -errno;
		mig_warn("guest", "dirty tracking: UFFDIO_WRITEPROTECT: %s",
			 strerror(errno));
		mig_uffd_unregister(fd, gd->ram, gd->ram_bytes);
	}
	if (r < 0) {
		close(fd);
		return r;
	}
	gd->wpfd = fd;
	mig_info("guest", "dirty tracking armed (%.1f ms)",
		 (mig_now_ns() - t0) / 1e6);
	return 0;
}

static void do_dirty_start(struct guestd *gd, int ci, const struct mig_ctl_hdr *h)
{
	int r = need_claim(gd, ci);

	/* the missing-page uffd owns RAM until every page is there */
	if (r == 0 && gd->incoming)
		r = -EBUSY;
	if (r == 0) {
		tracking_stop(gd); /* armed again: a fresh start */
		r = tracking_start(gd);
	}
	reply(gd, ci, h, r, NULL, 0);
}

static void do_dirty_stop(struct guestd *gd, int ci, const struct mig_ctl_hdr *h)
{
	int r = need_claim(gd, ci);

	if (r == 0)
		tracking_stop(gd);
	reply(gd, ci, h, r, NULL, 0);
}

/* All of RAM in page order; memfd holes digest as the zero pages they read
 * as, without being read (reading one through the mapping would allocate
 * it). Called with the vCPUs parked and, when incoming, no page missing. */
static int digest_ram(struct guestd *gd, uint64_t *out)
{
	struct mig_digest_ctx c;
	off_t off = 0, end = (off_t)gd->ram_bytes;

	mig_digest_init(&c);
	while (off < end) {
		off_t data = lseek(gd->memfd, off, SEEK_DATA), hole;

		if (data < 0 && errno != ENXIO)
			return -errno;
		if (data < 0 || data > end)
			data = end;
		mig_digest_zero(&c, (uint64_t)(data - off) / MIG_PAGE_SIZE);
		if (data == end)
			break;
		hole = lseek(gd->memfd, data, SEEK_HOLE);
		if (hole < 0)
			return -errno;
		if (hole > end)
			hole = end;
		mig_digest_update(&c, gd->ram + data, (uint64_t)(hole - data) /
				  MIG_PAGE_SIZE);
		off = hole;
	}
	*out = mig_digest_final(&c);
	return 0;
}

static void do_digest(struct guestd *gd, int ci, const struct mig_ctl_hdr *h)
{
	uint64_t first;
	int64_t missing = gd->incoming ? count_missing(gd, &first) : 0;

	if (missing != 0) { /* pages missing: never read them (see VERIFY) */
		if (missing > 0)
			mig_dbg("guest", "DIGEST: %" PRId64 " pages not placed yet "
				"(first: page %" PRIu64 ")", missing, first);
		reply(gd, ci, h, missing > 0 ? -EAGAIN : (int)missing, NULL, 0);
		return;
	}
	set_pending(gd, ci, PEND_DIGEST, h->seq);
}

/* Whether page can be poked now: 0, or the reply's error. */
static int poke_check(struct guestd *gd, int ci, uint64_t page)
{
	struct mig_workload_spec spec;
	off_t off = (off_t)(page * MIG_PAGE_SIZE);

	/* anyone may poke, claim or not: it is a write by the guest itself,
	 * exactly what a migration must cope with at any moment */
	(void)ci;
	if (!gd->wl)
		return -EAGAIN; /* incoming, no state loaded: no workload yet */
	/* only the dirty workload's pages say what a new version is; a write
	 * into ab's or idle's pages would break their invariant */
	if (mig_workload_parse(mig_workload_spec_text(gd->wl), &spec) < 0 ||
	    spec.id != MIG_WORKLOAD_DIRTY || page >= gd->ram_bytes / MIG_PAGE_SIZE)
		return -EINVAL;
	/* a missing page would fault this thread: it must be there */
	if (gd->incoming && lseek(gd->memfd, off, SEEK_DATA) != off)
		return -EAGAIN;
	return 0;
}

static void do_poke(struct guestd *gd, int ci, const struct mig_ctl_hdr *h,
		    const uint8_t *pl)
{
	uint64_t page = h->len == 8 ? mig_get_le64(pl) : UINT64_MAX;
	int r = h->len == 8 ? poke_check(gd, ci, page) : -EINVAL;

	if (r < 0) {
		reply(gd, ci, h, r, NULL, 0);
		return;
	}
	gd->cl[ci].page = page;
	set_pending(gd, ci, PEND_POKE, h->seq);
}

/* With every vCPU parked: pokes first (a digest or verify asked at the same
 * time then sees them), then the rest, each computed once for all askers. */
static void answer_pending(struct guestd *gd)
{
	char msg[MIG_CTL_TEXT_MAX] = "";
	bool verified = false, digested = false;
	uint8_t dpl[8];
	uint64_t dv = 0;
	int vr = 0, dr = 0;

	for (int i = 0; i < MAX_CLIENTS; i++) {
		struct client *c = &gd->cl[i];

		if (c->fd < 0 || c->pending != PEND_POKE)
			continue;
		c->pending = PEND_NONE;
		reply_text(gd, i, MIG_CTL_POKE, c->seq,
			   mig_workload_poke(gd->wl, c->page), "");
	}
	for (int i = 0; i < MAX_CLIENTS; i++) {
		struct client *c = &gd->cl[i];
		enum pending p = c->pending;

		if (c->fd < 0 || p == PEND_NONE)
			continue;
		c->pending = PEND_NONE;
		if (p == PEND_VERIFY && !verified) {
			/* pages never go missing again: the precheck holds */
			vr = mig_workload_verify(gd->wl, msg, sizeof(msg));
			verified = true;
			mig_info("guest", "verify: %s", msg);
		}
		if (p == PEND_DIGEST && !digested) {
			uint64_t t0 = mig_now_ns();

			dr = digest_ram(gd, &dv);
			digested = true;
			mig_put_le64(dpl, dv);
			mig_info("guest", "digest %016" PRIx64 " (%.1f ms)", dv,
				 (mig_now_ns() - t0) / 1e6);
		}
		if (p == PEND_DIGEST)
			reply(gd, i, &(struct mig_ctl_hdr){ .op = MIG_CTL_DIGEST,
				  .seq = c->seq }, dr, dpl, dr == 0 ? 8 : 0);
		else
			reply_text(gd, i, pending_op(p), c->seq,
				   p == PEND_STOP ? 0 : vr,
				   p == PEND_STOP ? "" : msg);
	}
}

/* After every event: answer STOP/VERIFY once the vCPUs are parked, then park
 * or release them as the clients now want. */
static void settle(struct guestd *gd)
{
	bool pending = false;

	for (int i = 0; i < MAX_CLIENTS; i++)
		pending |= gd->cl[i].fd >= 0 && gd->cl[i].pending != PEND_NONE;
	set_stop(gd, !gd->running || pending);
	/* with no vCPU threads (idle, or nothing loaded yet) nobody wakes us
	 * later: they count as parked at once */
	if (pending && all_parked(gd)) {
		answer_pending(gd);
		set_stop(gd, !gd->running);
	}
}

static void dispatch(struct guestd *gd, int ci, const struct mig_ctl_hdr *h,
		     const uint8_t *pl, const int *fds, int nfds)
{
	bool payload = h->op == MIG_CTL_LOAD_STATE || h->op == MIG_CTL_POKE ||
		       h->op == MIG_CTL_BIND || h->op == MIG_CTL_SET_STATE ||
		       h->op == MIG_CTL_ABANDON;

	/* only LOAD_STATE carries an fd */
	if ((h->op != MIG_CTL_LOAD_STATE && nfds) || (!payload && h->len)) {
		reply(gd, ci, h, -EINVAL, NULL, 0);
		return;
	}
	switch (h->op) {
	case MIG_CTL_INFO: do_info(gd, ci, h); break;
	case MIG_CTL_ATTACH: do_attach(gd, ci, h); break;
	case MIG_CTL_GET_FDS: do_get_fds(gd, ci, h); break;
	case MIG_CTL_STOP: do_stop(gd, ci, h); break;
	case MIG_CTL_CONT: do_cont(gd, ci, h); break;
	case MIG_CTL_SAVE_STATE: do_save_state(gd, ci, h); break;
	case MIG_CTL_LOAD_STATE: do_load_state(gd, ci, h, pl, fds, nfds); break;
	case MIG_CTL_INCOMING_DONE: do_incoming_done(gd, ci, h); break;
	case MIG_CTL_VERIFY: do_verify(gd, ci, h); break;
	case MIG_CTL_DIRTY_START: do_dirty_start(gd, ci, h); break;
	case MIG_CTL_DIRTY_STOP: do_dirty_stop(gd, ci, h); break;
	case MIG_CTL_DIGEST: do_digest(gd, ci, h); break;
	case MIG_CTL_POKE: do_poke(gd, ci, h, pl); break;
	case MIG_CTL_BIND: do_bind(gd, ci, h, pl); break;
	case MIG_CTL_SET_STATE: do_set_state(gd, ci, h, pl); break;
	case MIG_CTL_UNBIND: do_unbind(gd, ci, h); break;
	case MIG_CTL_ABANDON: do_abandon(gd, ci, h, pl); break;
	case MIG_CTL_QUIT:
		mig_info("guest", "quit requested by pid %d", (int)gd->cl[ci].pid);
		reply(gd, ci, h, 0, NULL, 0);
		gd->done = true;
		break;
	default:
		reply(gd, ci, h, -EOPNOTSUPP, NULL, 0);
	}
}

/* One message from a client: anything malformed gets an error reply. */
static void client_read(struct guestd *gd, int ci)
{
	struct mig_ctl_msg m;
	ssize_t n = mig_ctl_recv(gd->cl[ci].fd, &m, MIG_CTL_MAX_FDS);

	if (n == -EAGAIN)
		return;
	if (n == 0 || (n < 0 && n != -EMSGSIZE && n != -EPROTO)) {
		client_close(gd, ci);
		return;
	}
	if (n > 0 && m.h.status == 0)
		dispatch(gd, ci, &m.h, mig_ctl_payload(&m), m.fds, m.nfds);
	else if (gd->cl[ci].fd >= 0)
		/* echo a seq if there was a header to take it from */
		reply_fds(gd, ci, 0, m.h.seq, n == -EMSGSIZE ? -EMSGSIZE : -EPROTO,
			  NULL, 0, NULL, 0);
	mig_ctl_msg_close_fds(&m);
}

static void client_accept(struct guestd *gd)
{
	for (;;) {
		struct ucred cred = { .pid = 0 };
		socklen_t cl = sizeof(cred);
		int fd = accept4(gd->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		int ci;

		if (fd < 0) {
			if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
				mig_warn("guest", "accept: %s", strerror(errno));
			return;
		}
		for (ci = 0; ci < MAX_CLIENTS && gd->cl[ci].fd >= 0; ci++)
			;
		if (ci == MAX_CLIENTS) {
			mig_warn("guest", "too many control connections (%d): refusing one",
				 MAX_CLIENTS);
			close(fd);
			continue;
		}
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) < 0)
			mig_warn("guest", "SO_PEERCRED: %s", strerror(errno));
		gd->cl[ci] = (struct client){ .fd = fd, .pid = cred.pid };
		mig_dbg("guest", "client pid %d connected", (int)cred.pid);
	}
}

static void on_signal(struct guestd *gd)
{
	struct signalfd_siginfo si;

	if (read(gd->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		mig_info("guest", "%s: exiting", strsignal((int)si.ssi_signo));
		gd->done = true;
	}
}

/* An incoming guest exists for the engine that spawned it: if that engine
 * died before it could claim us, nobody ever will. */
static int orphan_check(struct guestd *gd)
{
	uint64_t waited_ms;

	if (!gd->o->incoming || gd->claimed)
		return -1;
	waited_ms = (mig_now_ns() - gd->t_start_ns) / 1000000;
	if (waited_ms < MIG_GUEST_UNCLAIMED_MS)
		return (int)(MIG_GUEST_UNCLAIMED_MS - waited_ms);
	mig_warn("guest", "incoming, and no engine claimed us in %u s: exiting",
		 MIG_GUEST_UNCLAIMED_MS / 1000);
	gd->done = true;
	return 0;
}

static int serve(struct guestd *gd)
{
	struct pollfd pfd[3 + MAX_CLIENTS];
	int slot[MAX_CLIENTS];

	while (!gd->done) {
		nfds_t n = 3;
		uint64_t ev;
		int timeout_ms = orphan_check(gd);

		pfd[0] = (struct pollfd){ .fd = gd->lfd, .events = POLLIN };
		pfd[1] = (struct pollfd){ .fd = gd->sigfd, .events = POLLIN };
		pfd[2] = (struct pollfd){ .fd = gd->evfd, .events = POLLIN };
		for (int i = 0; i < MAX_CLIENTS; i++) {
			if (gd->cl[i].fd < 0)
				continue;
			pfd[n].fd = gd->cl[i].fd;
			pfd[n].events = POLLIN;
			slot[n - 3] = i;
			n++;
		}
		if (gd->done)
			break;
		if (poll(pfd, n, timeout_ms) < 0) {
			if (errno == EINTR)
				continue;
			mig_err("guest", "poll: %s", strerror(errno));
			return -errno;
		}
		if (pfd[1].revents)
			on_signal(gd);
		if ((pfd[2].revents & POLLIN) && read(gd->evfd, &ev, sizeof(ev)) < 0)
			mig_dbg("guest", "eventfd read: %s", strerror(errno));
		for (nfds_t k = 3; k < n && !gd->done; k++) {
			int ci = slot[k - 3];

			if (gd->cl[ci].fd != pfd[k].fd)
				continue; /* closed meanwhile */
			if (pfd[k].revents & POLLIN)
				client_read(gd, ci);
			else if (pfd[k].revents & (POLLHUP | POLLERR | POLLNVAL))
				client_close(gd, ci);
		}
		if (pfd[0].revents & POLLIN)
			client_accept(gd);
		settle(gd);
	}
	return 0;
}

/* --- lifecycle -------------------------------------------------------------- */

static int start(struct guestd *gd)
{
	int r = signals_setup(gd);

	if (r == 0)
		r = ram_open(gd);
	if (r == 0 && gd->o->incoming)
		r = uffd_setup(gd);
	if (r == 0)
		r = workload_setup(gd);
	if (r == 0)
		r = sock_listen(gd);
	if (r == 0 && gd->wl)
		r = vcpus_start(gd);
	return r;
}

/* Teardown's join: each wait is this long, then the vCPUs are woken
 * again; a vCPU still there after JOIN_WARN_NS is worth a warning, after
 * JOIN_GIVEUP_NS it is left to the process exit. */
#define JOIN_STEP_NS (10 * 1000000ull)
#define JOIN_WARN_NS (1000 * 1000000ull)
#define JOIN_GIVEUP_NS (10000 * 1000000ull)

/* Join vCPU i, waiting at most JOIN_STEP_NS: 0, ETIMEDOUT, or another
 * error of pthread_clockjoin_np. */
static int join_step(struct guestd *gd, unsigned i)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_nsec += (long)JOIN_STEP_NS;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	return pthread_clockjoin_np(gd->vc[i].tid, NULL, CLOCK_MONOTONIC, &ts);
}

/* A vCPU is still there: whatever holds it in a userfault, release it.
 * Unregister again (one that failed, or a range registered anew through
 * an engine's copy of the uffd, would put a woken vCPU straight back to
 * sleep; ranges already unregistered are skipped) and wake all of RAM. */
static void vcpus_kick(struct guestd *gd)
{
	if (gd->uffd >= 0 && gd->ram)
		ram_unregister(gd);
}

/* Join every vCPU, waking them between bounded waits until each has left.
 * false: one is still running after JOIN_GIVEUP_NS (logged); it may use
 * RAM, the workload and gd until the process exits. */
static bool vcpus_join_waking(struct guestd *gd)
{
	uint64_t t0 = mig_now_ns();
	bool warned = false;
	unsigned i = 0;

	while (i < gd->nthreads) {
		uint64_t waited;
		int r = join_step(gd, i);

		if (r != ETIMEDOUT) {
			if (r)
				mig_err("guest", "joining vcpu %u: %s", i, strerror(r));
			i++;
			continue;
		}
		waited = mig_now_ns() - t0;
		if (waited >= JOIN_GIVEUP_NS) {
			mig_err("guest", "vcpu %u has not exited %.0f s into teardown: "
				"leaving it to the process exit", i, waited / 1e9);
			return false;
		}
		if (!warned && waited >= JOIN_WARN_NS) {
			mig_warn("guest", "vcpu %u has not exited %.1f s into "
				 "teardown: still waking it", i, waited / 1e9);
			warned = true;
		}
		mig_dbg("guest", "vcpu %u not gone yet: waking userfaults again", i);
		vcpus_kick(gd);
	}
	vcpus_forget(gd);
	return true;
}

/*
 * The vCPUs go first, in the order the kernel needs. The quit flags first:
 * from then on a vCPU that runs, or is woken from a fault, leaves at its
 * next page instead of faulting on. On an incoming guest, unregister and
 * wake (ram_unregister): a vCPU waiting in a fault no engine will serve
 * any more is released only so, and its page then reads as zero, which no
 * longer matters. Then join them, waking again while any is left, in case
 * anything put one back to sleep. false: one would not go.
 */
static bool teardown_vcpus(struct guestd *gd)
{
	vcpus_tell_quit(gd);
	if (gd->uffd >= 0 && gd->ram) {
		int r = ram_unregister(gd);

		if (r < 0)
			mig_warn("guest", "teardown: UFFDIO_UNREGISTER: %s",
				 mig_uffd_strerror(r));
	}
	return vcpus_join_waking(gd);
}

static void sock_close(struct guestd *gd)
{
	for (int i = 0; i < MAX_CLIENTS; i++)
		client_close(gd, i);
	mig_sock_release(gd->o->ctl_path, &gd->sock);
	if (gd->lfd >= 0)
		close(gd->lfd);
}

/*
 * Orderly shutdown: the vCPUs (teardown_vcpus), then the clients and the
 * socket, then RAM. A vCPU that would not go keeps RAM, the workload and
 * gd: -EBUSY, and the caller must not free gd either.
 */
static int teardown(struct guestd *gd)
{
	bool joined = teardown_vcpus(gd);

	tracking_stop(gd);
	sock_close(gd);
	/* the vCPUs are gone or given up on; for one that is stuck,
	 * closing the last reference makes the kernel wake every waiter */
	if (gd->uffd >= 0)
		close(gd->uffd);
	if (!joined)
		return -EBUSY;
	mig_workload_free(gd->wl);
	if (gd->ram)
		munmap(gd->ram, gd->ram_bytes);
	if (gd->memfd >= 0)
		close(gd->memfd);
	if (gd->sigfd >= 0)
		close(gd->sigfd);
	if (gd->evfd >= 0)
		close(gd->evfd);
	if (gd->masked)
		pthread_sigmask(SIG_SETMASK, &gd->oldmask, NULL);
	if (gd->ready_fd >= 0)
		close(gd->ready_fd); /* never ready: the waiter sees EOF */
	pthread_mutex_destroy(&gd->lock);
	pthread_cond_destroy(&gd->cond);
	return 0;
}

static int opts_check(const struct mig_guestd_opts *o)
{
	if (!o->ctl_path || !*o->ctl_path || !o->ram_bytes ||
	    o->ram_bytes % MIG_PAGE_SIZE || o->ram_bytes > MIG_WORKLOAD_MAX_RAM_BYTES ||
	    o->vcpus > MIG_WORKLOAD_MAX_VCPUS) {
		mig_err("guest", "invalid options");
		return -EINVAL;
	}
	return 0;
}

int mig_guestd_run(const struct mig_guestd_opts *o)
{
	struct guestd *gd;
	char sz[32];
	int r = opts_check(o);

	if (r < 0)
		return r;
	gd = calloc(1, sizeof(*gd));
	if (!gd)
		return -ENOMEM;
	gd->o = o;
	gd->ram_bytes = o->ram_bytes;
	gd->memfd = gd->uffd = gd->lfd = gd->sigfd = gd->evfd = gd->wpfd = -1;
	gd->ready_fd = o->ready_fd;
	gd->incoming = o->incoming;
	gd->holder = -1;
	gd->t_start_ns = mig_now_ns();
	atomic_init(&gd->stop, false);
	pthread_mutex_init(&gd->lock, NULL);
	pthread_cond_init(&gd->cond, NULL);
	for (int i = 0; i < MAX_CLIENTS; i++)
		gd->cl[i].fd = -1;
	r = start(gd);
	if (r == 0) {
		mig_info("guest", "pid %d listening on %s: %s RAM at %p, %s%s",
			 (int)getpid(), o->ctl_path,
			 mig_fmt_bytes(o->ram_bytes, sz, sizeof(sz)), (void *)gd->ram,
			 gd->wl ? mig_workload_spec_text(gd->wl) : "incoming",
			 gd->wl ? "" : " (RAM registered, waiting for pages)");
		mig_ready_notify(&gd->ready_fd);
		r = serve(gd);
	}
	if (teardown(gd) < 0)
		return r < 0 ? r : -EBUSY; /* gd stays: a vCPU still uses it */
	free(gd);
	return r;
}
