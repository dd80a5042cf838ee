// SPDX-License-Identifier: MIT
/*
 * A kvm vCPU's record (kvm.h): tagged sections of the kernel's own
 * structures in a fixed order, checked without KVM wherever a blob is
 * decoded, read from a parked vCPU, and loaded into a fresh one.
 */
#include <errno.h>
#include <linux/kvm.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "base/bytes.h"
#include "base/util.h"
#include "guest/kvm-int.h"
#include "guest/kvm.h"

/* Record sections, in this order, each a u32 tag, a u32 length, then the
 * kernel's structure. */
enum sect {
	S_REGS = 1, S_SREGS, S_XCRS, S_XSAVE, S_MSRS, S_EVENTS, S_MPSTATE,
	S_DEBUGREGS, S__END,
};
#define SECT_HDR 8u
#define XSAVE_MAX (64u << 10)
#define MSR_ENTRY ((uint32_t)sizeof(struct kvm_msr_entry))

/* The MSRs a guest's state may hold beyond what the other sections carry
 * (EFER is in the special registers): the TSC, so that time goes on where
 * it stopped, and those an OS sets once at boot. Only the ones this host's
 * KVM lists are saved. */
static const uint32_t msr_wanted[] = {
	0x10,       /* TSC */
	0x174, 0x175, 0x176, /* SYSENTER_CS, _ESP, _EIP */
	0x277,      /* PAT */
	0xc0000081, 0xc0000082, 0xc0000083, 0xc0000084, /* STAR, LSTAR, CSTAR, FMASK */
	0xc0000102, /* KERNEL_GS_BASE */
};
_Static_assert(MIG_ARRAY_SIZE(msr_wanted) == MAX_MSRS, "kvm-int.h's MAX_MSRS");

static uint32_t sect_fixed(enum sect s)
{
	switch (s) {
	case S_REGS: return sizeof(struct kvm_regs);
	case S_SREGS: return sizeof(struct kvm_sregs);
	case S_XCRS: return sizeof(struct kvm_xcrs);
	case S_EVENTS: return sizeof(struct kvm_vcpu_events);
	case S_MPSTATE: return sizeof(struct kvm_mp_state);
	case S_DEBUGREGS: return sizeof(struct kvm_debugregs);
	default: return 0;
	}
}

static bool msr_known(uint32_t index)
{
	for (size_t i = 0; i < MAX_MSRS; i++)
		if (msr_wanted[i] == index)
			return true;
	return false;
}

static bool msrs_ok(const uint8_t *p, uint32_t n)
{
	if (n % MSR_ENTRY || n / MSR_ENTRY > MAX_MSRS)
		return false;
	for (uint32_t off = 0; off < n; off += MSR_ENTRY)
		if (!msr_known(mig_get_le32(p + off)) || mig_get_le32(p + off + 4))
			return false;
	return true;
}

static bool sect_ok(enum sect s, const uint8_t *body, uint32_t n)
{
	uint32_t fixed = sect_fixed(s);

	if (fixed)
		return n == fixed;
	if (s == S_XSAVE)
		return n >= XSAVE_MIN && n <= XSAVE_MAX && n % 4 == 0;
	return msrs_ok(body, n);
}

long mig_kvm_record_check(const uint8_t *p, size_t len)
{
	size_t off = 0;

	for (enum sect s = S_REGS; s < S__END; s++) {
		uint32_t n;

		if (len - off < SECT_HDR || mig_get_le32(p + off) != (uint32_t)s)
			return -EBADMSG;
		n = mig_get_le32(p + off + 4);
		if (n > len - off - SECT_HDR || !sect_ok(s, p + off + SECT_HDR, n))
			return -EBADMSG;
		off += SECT_HDR + n;
	}
	return (long)off;
}

/* KVM_GET_MSRS or KVM_SET_MSRS over n entries: how many KVM did, or
 * -errno. A get fills e's data. */
static int msrs_ioctl(int fd, unsigned long op, struct kvm_msr_entry *e, unsigned n)
{
	struct kvm_msrs *b = calloc(1, sizeof(*b) + n * sizeof(*e));
	int r;

	if (!b)
		return -ENOMEM;
	b->nmsrs = n;
	memcpy(b->entries, e, n * sizeof(*e));
	r = ioctl(fd, op, b);
	if (r < 0)
		r = -errno;
	else if (op == KVM_GET_MSRS)
		memcpy(e, b->entries, n * sizeof(*e));
	free(b);
	return r;
}

/* m->msrs as entries to read. */
static void msrs_entries(const struct mig_kvm *m, struct kvm_msr_entry *e)
{
	memset(e, 0, MAX_MSRS * sizeof(*e));
	for (unsigned k = 0; k < m->nmsrs; k++)
		e[k].index = m->msrs[k];
}

/* The MSRs of msr_wanted this KVM lists. */
static int msrs_listed(struct mig_kvm *m)
{
	const uint32_t room = 1024;
	struct kvm_msr_list *l = calloc(1, sizeof(*l) + room * sizeof(l->indices[0]));

	if (!l)
		return -ENOMEM;
	l->nmsrs = room;
	if (ioctl(m->sys, KVM_GET_MSR_INDEX_LIST, l) < 0) {
		free(l);
		return -errno;
	}
	m->nmsrs = 0;
	for (size_t k = 0; k < MAX_MSRS; k++)
		for (uint32_t j = 0; j < l->nmsrs && j < room; j++)
			if (l->indices[j] == msr_wanted[k]) {
				m->msrs[m->nmsrs++] = msr_wanted[k];
				break;
			}
	free(l);
	return 0;
}

/* ... and vCPU 0 reads: one listed but refused goes (KVM_GET_MSRS stops
 * at it). */
int kvm_msrs_probe(struct mig_kvm *m)
{
	struct kvm_msr_entry e[MAX_MSRS];
	int n = msrs_listed(m);

	while (n == 0) {
		msrs_entries(m, e);
		n = msrs_ioctl(m->v[0].fd, KVM_GET_MSRS, e, m->nmsrs);
		if (n < 0 || (unsigned)n == m->nmsrs)
			break;
		memmove(&m->msrs[n], &m->msrs[n + 1], (m->nmsrs - n - 1) * sizeof(m->msrs[0]));
		m->nmsrs--;
		n = 0;
	}
	return n < 0 ? n : 0;
}

size_t kvm_rec_size(const struct mig_kvm *m)
{
	size_t n = 0;

	for (enum sect s = S_REGS; s < S__END; s++)
		n += SECT_HDR + (s == S_XSAVE ? m->xsave_bytes :
				 s == S_MSRS ? m->nmsrs * MSR_ENTRY : sect_fixed(s));
	return n;
}

static uint8_t *sect_put(uint8_t *p, enum sect s, size_t n)
{
	mig_put_le32(p, (uint32_t)s);
	mig_put_le32(p + 4, (uint32_t)n);
	return p + SECT_HDR;
}

static int get_msrs(struct mig_kvm *m, struct vcpu *v, uint8_t *body)
{
	struct kvm_msr_entry e[MAX_MSRS];

	msrs_entries(m, e);
	if (msrs_ioctl(v->fd, KVM_GET_MSRS, e, m->nmsrs) != (int)m->nmsrs)
		return -EIO;
	memcpy(body, e, m->nmsrs * MSR_ENTRY);
	return 0;
}

/* vCPU i's state into its record, and where it stands. */
int kvm_snapshot(struct mig_kvm *m, unsigned i)
{
	struct vcpu *v = &m->v[i];
	unsigned long xsave_op = m->xsave_bytes > XSAVE_MIN ? KVM_GET_XSAVE2 : KVM_GET_XSAVE;
	struct kvm_regs regs;
	uint8_t *p = v->rec, *b;

	b = sect_put(p, S_REGS, sizeof(regs));
	if (ioctl(v->fd, KVM_GET_REGS, &regs) < 0)
		return -errno;
	memcpy(b, &regs, sizeof(regs));
	p = b + sizeof(regs);
	b = sect_put(p, S_SREGS, sizeof(struct kvm_sregs));
	if (ioctl(v->fd, KVM_GET_SREGS, b) < 0)
		return -errno;
	p = sect_put(b + sizeof(struct kvm_sregs), S_XCRS, sizeof(struct kvm_xcrs));
	if (ioctl(v->fd, KVM_GET_XCRS, p) < 0)
		return -errno;
	b = sect_put(p + sizeof(struct kvm_xcrs), S_XSAVE, m->xsave_bytes);
	if (ioctl(v->fd, xsave_op, b) < 0)
		return -errno;
	p = sect_put(b + m->xsave_bytes, S_MSRS, m->nmsrs * MSR_ENTRY);
	if (get_msrs(m, v, p) < 0)
		return -EIO;
	b = sect_put(p + m->nmsrs * MSR_ENTRY, S_EVENTS, sizeof(struct kvm_vcpu_events));
	if (ioctl(v->fd, KVM_GET_VCPU_EVENTS, b) < 0)
		return -errno;
	p = sect_put(b + sizeof(struct kvm_vcpu_events), S_MPSTATE,
		     sizeof(struct kvm_mp_state));
	if (ioctl(v->fd, KVM_GET_MP_STATE, p) < 0)
		return -errno;
	b = sect_put(p + sizeof(struct kvm_mp_state), S_DEBUGREGS,
		     sizeof(struct kvm_debugregs));
	if (ioctl(v->fd, KVM_GET_DEBUGREGS, b) < 0)
		return -errno;
	v->rip = regs.rip;
	v->rdi = regs.rdi;
	return 0;
}

static int set_msrs(struct vcpu *v, const uint8_t *body, uint32_t n)
{
	struct kvm_msr_entry e[MAX_MSRS];

	memcpy(e, body, n);
	return msrs_ioctl(v->fd, KVM_SET_MSRS, e, n / MSR_ENTRY) == (int)(n / MSR_ENTRY) ?
	       0 : -EINVAL;
}

static const struct { unsigned long op; const char *name; } set_ops[S__END] = {
	[S_REGS] = { KVM_SET_REGS, "registers" },
	[S_SREGS] = { KVM_SET_SREGS, "special registers" },
	[S_XCRS] = { KVM_SET_XCRS, "XCRs" },
	[S_XSAVE] = { KVM_SET_XSAVE, "XSAVE area" },
	[S_MSRS] = { 0, "MSRs" },
	[S_EVENTS] = { KVM_SET_VCPU_EVENTS, "pending events" },
	[S_MPSTATE] = { KVM_SET_MP_STATE, "MP state" },
	[S_DEBUGREGS] = { KVM_SET_DEBUGREGS, "debug registers" },
};

/* Special registers before the others: the mode they set is what KVM
 * checks the rest against. */
static const enum sect load_order[] = {
	S_SREGS, S_REGS, S_XCRS, S_XSAVE, S_MSRS, S_EVENTS, S_MPSTATE, S_DEBUGREGS,
};

int mig_kvm_load(struct mig_kvm *m, unsigned i, const uint8_t *rec, size_t len,
		 const char **why)
{
	const uint8_t *body[S__END];
	uint32_t n[S__END];
	size_t off = 0;
	struct vcpu *v = &m->v[i];

	*why = "a malformed record";
	if (i >= m->nvcpus || mig_kvm_record_check(rec, len) != (long)len)
		return -EBADMSG;
	for (enum sect s = S_REGS; s < S__END; s++) {
		n[s] = mig_get_le32(rec + off + 4);
		body[s] = rec + off + SECT_HDR;
		off += SECT_HDR + n[s];
	}
	*why = "an XSAVE area of another size than this host's";
	if (n[S_XSAVE] != m->xsave_bytes)
		return -EINVAL;
	for (size_t k = 0; k < MIG_ARRAY_SIZE(load_order); k++) {
		enum sect s = load_order[k];
		int r;

		/* a copy: the ioctls want their structures aligned */
		uint8_t *tmp = malloc(n[s] ? n[s] : 1);

		if (!tmp)
			return -ENOMEM;
		memcpy(tmp, body[s], n[s]);
		r = s == S_MSRS ? set_msrs(v, tmp, n[s]) :
		    ioctl(v->fd, set_ops[s].op, tmp) < 0 ? -errno : 0;
		free(tmp);
		if (r < 0) {
			*why = set_ops[s].name;
			return r;
		}
	}
	*why = "reading the state back";
	return kvm_snapshot(m, i);
}
