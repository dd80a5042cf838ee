// SPDX-License-Identifier: MIT
/*
 * The kvm workload: ab's walk done by a real virtual machine (kvm.h).
 * Its execution state is the vCPUs' KVM state; the cursor, the pass count
 * and whether each vCPU has booted are read off it whenever a vCPU parks,
 * so that the state, verify and info see the same numbers as for ab.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/bytes.h"
#include "base/util.h"
#include "guest/kvm.h"
#include "guest/workload-int.h"
#include "guest/workload.h"

/* The records of a machine section, one per vCPU: i's at *off. */
static bool machine_walk(const struct mig_workload_state *st, unsigned i,
			 size_t *off, size_t *len)
{
	size_t at = 0;

	for (unsigned k = 0; k <= i; k++) {
		long n;

		if (at > st->machine_len)
			return false;
		n = mig_kvm_record_check(st->machine + at, st->machine_len - at);
		if (n < 0)
			return false;
		*off = at;
		*len = (size_t)n;
		at += (size_t)n;
	}
	return i + 1 < st->vcpus || at == st->machine_len;
}

static bool kvm_state_valid(const struct mig_workload_state *st)
{
	size_t off, len;

	if (mig_kvm_ram_check(st->ram_bytes, st->vcpus))
		return false;
	/* a fresh state has none: the machine is made at reset; the last
	 * vCPU's walk checks every record before it, and the end */
	return !st->machine || machine_walk(st, st->vcpus - 1, &off, &len);
}

/* The machine, and each vCPU's pass count when it was made here. */
struct kvm_wl {
	struct mig_kvm *m;
	uint64_t passes0[MIG_KVM_MAX_VCPUS];
};

static struct mig_kvm *machine(const struct mig_workload *w)
{
	return ((struct kvm_wl *)w->priv)->m;
}

/* Where vCPU i stood at its last park. */
static int position(const struct mig_workload *w, unsigned i,
		    struct mig_kvm_vcpu_view *v, uint64_t *cursor, bool *pending)
{
	uint64_t first, len;

	mig_kvm_view(machine(w), i, v);
	mig_kvm_slice(w->st.ram_bytes, w->st.vcpus, i, &first, &len);
	*cursor = 0;
	*pending = false;
	if (!v->booted)
		return 0;
	return mig_kvm_position(w->st.ram_bytes, first, len, v->rip, v->rdi,
				cursor, pending);
}

/* The state, from vCPU i's last park. */
static int vcpu_state(struct mig_workload *w, unsigned i)
{
	struct mig_kvm_vcpu_view v;
	bool pending;
	int r = position(w, i, &v, &w->st.cursor[i], &pending);

	w->st.passes[i] = v.passes;
	w->st.booted[i] = v.booted;
	return r;
}

static void kvm_close(struct mig_workload *w)
{
	struct kvm_wl *k = w->priv;

	if (k)
		mig_kvm_close(k->m);
	free(k);
	w->priv = NULL;
}

static int load_vcpus(struct mig_workload *w, const char **why)
{
	const struct mig_workload_state *st = &w->st;

	for (unsigned i = 0; i < st->vcpus; i++) {
		size_t off, len;
		uint64_t cursor = st->cursor[i];
		int r;

		if (!machine_walk(st, i, &off, &len)) {
			*why = "a malformed machine section";
			return -EBADMSG;
		}
		r = mig_kvm_load(machine(w), i, st->machine + off, len, why);
		if (r < 0)
			return r;
		mig_kvm_set_progress(machine(w), i, st->passes[i], st->booted[i]);
		if (vcpu_state(w, i) < 0 || w->st.cursor[i] != cursor) {
			*why = "registers that disagree with the cursor";
			return -EBADMSG;
		}
	}
	return 0;
}

static int kvm_open(struct mig_workload *w, const char **why)
{
	struct kvm_wl *k = calloc(1, sizeof(*k));
	struct mig_kvm_vcpu_view v;
	int r;

	if (!k)
		return -1;
	k->m = mig_kvm_open(w->ram, w->st.ram_bytes, w->st.vcpus, why);
	if (!k->m) {
		free(k);
		return -1;
	}
	w->priv = k;
	r = w->st.machine ? load_vcpus(w, why) : mig_kvm_reset(k->m);
	if (r < 0) {
		if (!w->st.machine)
			*why = "resetting its vCPUs";
		kvm_close(w);
		errno = -r;
		return -1;
	}
	for (unsigned i = 0; i < w->st.vcpus; i++) {
		vcpu_state(w, i);
		k->passes0[i] = w->st.passes[i];
	}
	/* the records a save hands out: the machine's own, kept current by
	 * every park */
	mig_kvm_view(k->m, 0, &v);
	w->st.machine = v.rec;
	w->st.machine_len = v.rec_len * w->st.vcpus;
	return 0;
}

static void kvm_fill(struct mig_workload *w)
{
	memcpy(w->ram + MIG_KVM_LOAD_ADDR, mig_abguest_img, MIG_KVM_IMG_BYTES);
}

static void kvm_run(struct mig_workload *w, unsigned i, const atomic_bool *stop)
{
	mig_kvm_run(machine(w), i, stop);
	vcpu_state(w, i);
}

/* Live, in whole passes (a slice's pages each), as ab counts pages. */
static uint64_t kvm_progress(const struct mig_workload *w)
{
	const struct kvm_wl *k = w->priv;
	uint64_t sum = 0;

	for (unsigned i = 0; i < w->st.vcpus; i++) {
		uint64_t first, len;

		mig_kvm_slice(w->st.ram_bytes, w->st.vcpus, i, &first, &len);
		sum += (mig_kvm_passes(k->m, i) - k->passes0[i]) * len;
	}
	return sum;
}

static void kvm_kick(struct mig_workload *w)
{
	mig_kvm_kick(machine(w));
}

static void kvm_set_serial(struct mig_workload *w, int fd)
{
	mig_kvm_set_serial(machine(w), fd);
}

/* Every vCPU's pass count must be the counter its slice's last page
 * holds: one character per pass, none lost, none twice. */
static int passes_check(const struct mig_workload *w, char *msg, size_t len)
{
	for (unsigned i = 0; i < w->st.vcpus; i++) {
		struct mig_kvm_vcpu_view v;
		uint64_t first, n, cursor;
		uint32_t last;
		bool pending;

		if (position(w, i, &v, &cursor, &pending) < 0) {
			snprintf(msg, len, "kvm: vcpu %u: rip 0x%" PRIx64 " rdi 0x%"
				 PRIx64 " are not a walk over its slice", i, v.rip,
				 v.rdi);
			return -EBADMSG;
		}
		if (v.failed) {
			snprintf(msg, len, "kvm: vcpu %u stopped: %s", i, v.failed);
			return -EBADMSG;
		}
		mig_kvm_slice(w->st.ram_bytes, w->st.vcpus, i, &first, &n);
		last = mig_get_le32(w->ram + (first + n - 1) * MIG_PAGE_SIZE);
		if ((uint32_t)(v.passes + pending) != last) {
			snprintf(msg, len, "kvm: vcpu %u wrote %" PRIu64 " pass "
				 "characters%s, its last page says %" PRIu32
				 " passes: invariant broken", i, v.passes,
				 pending ? " (one due)" : "", last);
			return -EBADMSG;
		}
	}
	return 0;
}

static int kvm_verify(const struct mig_workload *w, char *msg, size_t len)
{
	size_t used;
	int r = passes_check(w, msg, len);

	if (r == 0)
		r = workload_ab_verify(w, "kvm", msg, len);
	if (r < 0)
		return r;
	used = strlen(msg);
	for (unsigned i = 0; i < w->st.vcpus && used + 24 < len; i++)
		used += (size_t)snprintf(msg + used, len - used, "%s%" PRIu64,
					 i ? "," : ", passes ", w->st.passes[i]);
	return 0;
}

const struct workload_ops workload_kvm = {
	.name = "kvm", .id = MIG_WORKLOAD_KVM, .state_words = 3,
	.fill = kvm_fill, .run = kvm_run, .verify = kvm_verify,
	.slice = mig_kvm_slice, .open = kvm_open, .close = kvm_close,
	.kick = kvm_kick, .set_serial = kvm_set_serial, .progress = kvm_progress,
	.state_valid = kvm_state_valid, .has_machine = true,
};
