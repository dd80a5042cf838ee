// SPDX-License-Identifier: MIT
/*
 * Postcopy blocktime on the destination, as QEMU's query-migrate defines
 * it: per vCPU, how long it waited on missing pages; in all, how long every
 * vCPU waited at once, the time the guest made no progress at all. A vCPU
 * waits from the moment the fault thread reads its fault until the page is
 * placed (a receiver) or turns out to be present already (the fault
 * thread). Which vCPU faulted: the kernel gives the thread id
 * (UFFD_FEATURE_THREAD_ID) and the guest names its vCPU threads "vcpuN".
 *
 * A restarted engine (mig-recv --attach) counts from its takeover: what
 * the dead engine counted went with it, and the vCPUs it left waiting are
 * woken to fault again, so their waits count from then. Faults without a
 * thread id (a guest whose uffd lacks the feature) count for no vCPU.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/util.h"
#include "dest/dest-int.h"

/* Threads of the guest seen faulting, remembered so that each one's name is
 * read once: every vCPU, and as many others. */
#define TIDS_MAX (2 * MIG_WORKLOAD_MAX_VCPUS)

struct tid_vcpu {
	pid_t tid;
	int vcpu;                   /* -1: not a vCPU */
};

struct dst_bt {
	pthread_mutex_t lock;       /* acct: the fault thread, receivers, bus */
	struct dst_bt_acct acct;
	/* the fault thread's alone */
	struct tid_vcpu tids[TIDS_MAX];
	unsigned ntids, next;
};

void dst_bt_acct_reset(struct dst_bt_acct *a, unsigned nvcpus)
{
	memset(a, 0, sizeof(*a));
	a->nvcpus = MIG_MIN(nvcpus, MIG_WORKLOAD_MAX_VCPUS);
}

void dst_bt_acct_fault(struct dst_bt_acct *a, unsigned v, uint64_t page,
		       uint64_t now_ns)
{
	struct dst_bt_vcpu *c;

	if (v >= a->nvcpus)
		return;
	c = &a->v[v];
	c->page = page;
	if (c->since_ns)
		return;
	c->since_ns = now_ns;
	if (++a->nblocked == a->nvcpus)
		a->all_since_ns = now_ns;
}

void dst_bt_acct_placed(struct dst_bt_acct *a, uint64_t page, uint64_t now_ns)
{
	for (unsigned v = 0; v < a->nvcpus && a->nblocked; v++) {
		struct dst_bt_vcpu *c = &a->v[v];

		if (!c->since_ns || c->page != page)
			continue;
		if (a->nblocked == a->nvcpus)
			a->all_ns += now_ns - a->all_since_ns;
		a->nblocked--;
		c->ns += now_ns - c->since_ns;
		c->since_ns = 0;
	}
}

static uint32_t ms32(uint64_t ns)
{
	return (uint32_t)MIG_MIN(ns / 1000000, (uint64_t)UINT32_MAX);
}

void dst_bt_acct_read(const struct dst_bt_acct *a, uint64_t now_ns,
		      struct dst_blocktime *out)
{
	uint64_t all = a->all_ns;

	if (a->nvcpus && a->nblocked == a->nvcpus)
		all += now_ns - a->all_since_ns;
	out->total_ms = ms32(all);
	out->nvcpus = a->nvcpus;
	for (unsigned v = 0; v < a->nvcpus; v++) {
		const struct dst_bt_vcpu *c = &a->v[v];

		out->vcpu_ms[v] = ms32(c->ns + (c->since_ns ? now_ns - c->since_ns : 0));
	}
}

struct dst_bt *dst_blocktime_new(void)
{
	struct dst_bt *bt = calloc(1, sizeof(*bt));

	if (bt)
		pthread_mutex_init(&bt->lock, NULL);
	return bt;
}

void dst_blocktime_free(struct dst_bt *bt)
{
	if (!bt)
		return;
	pthread_mutex_destroy(&bt->lock);
	free(bt);
}

void dst_blocktime_start(struct dst *d, unsigned nvcpus)
{
	pthread_mutex_lock(&d->bt->lock);
	dst_bt_acct_reset(&d->bt->acct, nvcpus);
	pthread_mutex_unlock(&d->bt->lock);
}

/* The index N of a thread named "vcpuN", or -1. */
static int read_vcpu(pid_t pid, pid_t tid)
{
	char path[64], comm[32], nl;
	unsigned v;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/task/%d/comm", (int)pid, (int)tid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	n = read(fd, comm, sizeof(comm) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	comm[n] = '\0';
	if (sscanf(comm, "vcpu%u%c", &v, &nl) != 2 || nl != '\n' ||
	    v >= MIG_WORKLOAD_MAX_VCPUS)
		return -1;
	return (int)v;
}

/* A tid is taken to stay the thread it was when first seen: the guest's
 * vCPUs live as long as it runs here, and the kernel hands out a freed
 * thread id again only after going round all the others. */
int dst_blocktime_vcpu(struct dst *d, pid_t tid)
{
	struct dst_bt *bt = d->bt;
	pid_t pid = atomic_load(&d->guest_pid);
	struct tid_vcpu *t;

	if (tid <= 0 || pid <= 0)
		return -1;
	for (unsigned i = 0; i < bt->ntids; i++)
		if (bt->tids[i].tid == tid)
			return bt->tids[i].vcpu;
	if (bt->ntids < TIDS_MAX) {
		t = &bt->tids[bt->ntids++];
	} else {
		t = &bt->tids[bt->next];
		bt->next = (bt->next + 1) % TIDS_MAX;
	}
	t->tid = tid;
	t->vcpu = read_vcpu(pid, tid);
	return t->vcpu;
}

/* The time is read under the lock, so that the calls of the threads take
 * their times in the order they account them. */
void dst_blocktime_fault(struct dst *d, int vcpu, uint64_t page)
{
	if (vcpu < 0)
		return;
	pthread_mutex_lock(&d->bt->lock);
	dst_bt_acct_fault(&d->bt->acct, (unsigned)vcpu, page, mig_now_ns());
	pthread_mutex_unlock(&d->bt->lock);
}

void dst_blocktime_placed(struct dst *d, uint64_t page)
{
	pthread_mutex_lock(&d->bt->lock);
	dst_bt_acct_placed(&d->bt->acct, page, mig_now_ns());
	pthread_mutex_unlock(&d->bt->lock);
}

void dst_blocktime_get(struct dst *d, struct dst_blocktime *out)
{
	pthread_mutex_lock(&d->bt->lock);
	dst_bt_acct_read(&d->bt->acct, mig_now_ns(), out);
	pthread_mutex_unlock(&d->bt->lock);
}
