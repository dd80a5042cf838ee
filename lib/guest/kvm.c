// SPDX-License-Identifier: MIT
/*
 * The kvm workload's machine: see kvm.h. The VM, its vCPUs, their exits
 * and the devices the guest talks to; kvm-record.c has the records,
 * kvm-layout.c the arithmetic.
 *
 * Stopping a vCPU: KVM_RUN returns only on an exit, so a stop sets the
 * run structure's immediate_exit and sends the vCPU thread KICK_SIGNAL
 * (a no-op handler, so that the signal only interrupts). Whichever comes
 * first, KVM_RUN returns EINTR at once or before the next guest
 * instruction, a vCPU waiting in a userfault included: KVM's page faults
 * are interruptible. The vCPU then stands at an instruction boundary,
 * which is all a consistent state needs.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "base/bytes.h"
#include "base/log.h"
#include "base/util.h"
#include "guest/kvm-int.h"
#include "guest/kvm.h"

#define GIB4 (1ull << 32)
#define KICK_SIGNAL SIGUSR1
/* Where Intel's real-mode helpers live without a memslot: in the hole
 * below 4 GiB, which RAM never reaches (low RAM ends by 3.5 GiB). */
#define TSS_ADDR 0xfffbd000ul
#define IDENTITY_MAP_ADDR 0xfffbc000ull

static void kick_handler(int sig)
{
	(void)sig;
}

static void kick_install(void)
{
	struct sigaction sa = { .sa_handler = kick_handler };

	sigemptyset(&sa.sa_mask);
	sigaction(KICK_SIGNAL, &sa, NULL); /* no SA_RESTART: KVM_RUN returns */
}

static int sys_cpuid(struct mig_kvm *m)
{
	for (unsigned n = 64; n <= 4096; n *= 2) {
		struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + n * sizeof(c->entries[0]));

		if (!c)
			return -ENOMEM;
		c->nent = n;
		if (ioctl(m->sys, KVM_GET_SUPPORTED_CPUID, c) == 0) {
			m->cpuid = c;
			return 0;
		}
		free(c);
		if (errno != E2BIG)
			return -errno;
	}
	return -E2BIG;
}

/* This host's CPUID, with vCPU i's APIC ID in it. */
static int vcpu_cpuid(struct mig_kvm *m, unsigned i)
{
	size_t sz = sizeof(*m->cpuid) + m->cpuid->nent * sizeof(m->cpuid->entries[0]);
	struct kvm_cpuid2 *c = malloc(sz);
	int r = 0;

	if (!c)
		return -ENOMEM;
	memcpy(c, m->cpuid, sz);
	for (uint32_t k = 0; k < c->nent; k++) {
		struct kvm_cpuid_entry2 *e = &c->entries[k];

		if (e->function == 1)
			e->ebx = (e->ebx & 0x00ffffffu) | (i << 24);
		else if (e->function == 0xb || e->function == 0x1f)
			e->edx = i;
	}
	if (ioctl(m->v[i].fd, KVM_SET_CPUID2, c) < 0)
		r = -errno;
	free(c);
	return r;
}

static int memslot(struct mig_kvm *m, uint32_t slot, uint64_t gpa, uint64_t off,
		   uint64_t len)
{
	struct kvm_userspace_memory_region r = {
		.slot = slot, .guest_phys_addr = gpa, .memory_size = len,
		.userspace_addr = (uintptr_t)(m->ram + off),
	};

	if (!len)
		return 0;
	return ioctl(m->vm, KVM_SET_USER_MEMORY_REGION, &r) < 0 ? -errno : 0;
}

static int vm_create(struct mig_kvm *m, const char **why)
{
	uint64_t idmap = IDENTITY_MAP_ADDR;
	long x;

	*why = "KVM_CREATE_VM";
	m->vm = ioctl(m->sys, KVM_CREATE_VM, 0);
	if (m->vm < 0)
		return -errno;
	*why = "KVM_SET_TSS_ADDR";
	if (ioctl(m->vm, KVM_SET_IDENTITY_MAP_ADDR, &idmap) < 0 ||
	    ioctl(m->vm, KVM_SET_TSS_ADDR, TSS_ADDR) < 0)
		return -errno;
	*why = "KVM_SET_USER_MEMORY_REGION";
	if (memslot(m, 0, 0, 0, m->low_end) < 0 ||
	    memslot(m, 1, GIB4, m->low_end, m->ram_bytes - m->low_end) < 0)
		return -errno;
	*why = "KVM_GET_VCPU_MMAP_SIZE";
	x = ioctl(m->sys, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (x <= 0)
		return x < 0 ? -errno : -EINVAL;
	m->run_bytes = (size_t)x;
	x = ioctl(m->vm, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);
	m->xsave_bytes = x > (long)XSAVE_MIN ? (size_t)x : XSAVE_MIN;
	*why = "KVM_GET_SUPPORTED_CPUID";
	return sys_cpuid(m);
}

static int vcpu_create(struct mig_kvm *m, unsigned i)
{
	struct vcpu *v = &m->v[i];
	void *run;

	v->fd = ioctl(m->vm, KVM_CREATE_VCPU, (unsigned long)i);
	if (v->fd < 0)
		return -errno;
	run = mmap(NULL, m->run_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
	if (run == MAP_FAILED)
		return -errno;
	v->run = run;
	return vcpu_cpuid(m, i);
}

struct mig_kvm *mig_kvm_open(uint8_t *ram, uint64_t ram_bytes, unsigned vcpus,
			     const char **why)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	struct mig_kvm *m;
	int r = 0;

	*why = mig_kvm_ram_check(ram_bytes, vcpus);
	if (*why || !vcpus) {
		errno = EINVAL;
		return NULL;
	}
	m = calloc(1, sizeof(*m));
	if (!m)
		return NULL;
	m->vm = m->serial_fd = -1;
	m->ram = ram;
	m->ram_bytes = ram_bytes;
	m->low_end = mig_kvm_low_end(ram_bytes);
	m->nvcpus = vcpus;
	for (unsigned i = 0; i < MIG_KVM_MAX_VCPUS; i++)
		m->v[i].fd = -1;
	pthread_mutex_init(&m->lock, NULL);
	*why = "/dev/kvm";
	m->sys = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (m->sys < 0)
		r = -errno;
	else if (ioctl(m->sys, KVM_GET_API_VERSION, 0) != KVM_API_VERSION)
		r = -ENOTSUP;
	if (r == 0)
		r = vm_create(m, why);
	for (unsigned i = 0; r == 0 && i < vcpus; i++) {
		*why = "KVM_CREATE_VCPU";
		r = vcpu_create(m, i);
	}
	if (r == 0) {
		*why = "KVM_GET_MSRS";
		r = kvm_msrs_probe(m);
	}
	if (r == 0) {
		m->rec_bytes = kvm_rec_size(m);
		m->records = calloc(vcpus, m->rec_bytes);
		r = m->records ? 0 : -ENOMEM;
	}
	if (r < 0) {
		mig_kvm_close(m);
		errno = -r;
		return NULL;
	}
	for (unsigned i = 0; i < vcpus; i++)
		m->v[i].rec = m->records + i * m->rec_bytes;
	pthread_once(&once, kick_install);
	*why = NULL;
	return m;
}

void mig_kvm_close(struct mig_kvm *m)
{
	if (!m)
		return;
	for (unsigned i = 0; i < MIG_KVM_MAX_VCPUS; i++) {
		if (m->v[i].run)
			munmap(m->v[i].run, m->run_bytes);
		if (m->v[i].fd >= 0)
			close(m->v[i].fd);
	}
	if (m->vm >= 0)
		close(m->vm);
	if (m->sys >= 0)
		close(m->sys);
	pthread_mutex_destroy(&m->lock);
	free(m->cpuid);
	free(m->records);
	free(m);
}

void mig_kvm_set_serial(struct mig_kvm *m, int fd)
{
	m->serial_fd = fd;
}

int mig_kvm_reset(struct mig_kvm *m)
{
	for (unsigned i = 0; i < m->nvcpus; i++) {
		struct vcpu *v = &m->v[i];
		struct kvm_regs regs = { .rip = MIG_KVM_LOAD_ADDR, .rflags = 2 };
		struct kvm_sregs sregs;
		int r;

		if (ioctl(v->fd, KVM_GET_SREGS, &sregs) < 0)
			return -errno;
		/* real mode at 0000:7c00, where a BIOS leaves a boot sector */
		sregs.cs.base = 0;
		sregs.cs.selector = 0;
		if (ioctl(v->fd, KVM_SET_SREGS, &sregs) < 0 ||
		    ioctl(v->fd, KVM_SET_REGS, &regs) < 0)
			return -errno;
		r = kvm_snapshot(m, i);
		if (r < 0)
			return r;
		atomic_store(&v->passes, 0);
		v->booted = false;
	}
	return 0;
}

void mig_kvm_set_progress(struct mig_kvm *m, unsigned i, uint64_t passes,
			  bool booted)
{
	atomic_store(&m->v[i].passes, passes);
	m->v[i].booted = booted;
}

uint64_t mig_kvm_passes(const struct mig_kvm *m, unsigned i)
{
	return atomic_load_explicit(&m->v[i].passes, memory_order_relaxed);
}

void mig_kvm_view(const struct mig_kvm *m, unsigned i, struct mig_kvm_vcpu_view *out)
{
	const struct vcpu *v = &m->v[i];

	*out = (struct mig_kvm_vcpu_view){
		.rec = v->rec, .rec_len = m->rec_bytes, .rip = v->rip, .rdi = v->rdi,
		.passes = mig_kvm_passes(m, i), .booted = v->booted,
		.failed = v->failed[0] ? v->failed : NULL,
	};
}

static void fail(struct mig_kvm *m, unsigned i, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* vCPU i cannot go on: it parks for good, and verify says why. */
static void fail(struct mig_kvm *m, unsigned i, const char *fmt, ...)
{
	struct vcpu *v = &m->v[i];
	struct kvm_regs regs = { 0 };
	char what[96];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	ioctl(v->fd, KVM_GET_REGS, &regs);
	snprintf(v->failed, sizeof(v->failed), "%s at rip 0x%llx", what,
		 (unsigned long long)regs.rip);
	mig_err("guest", "vcpu %u: %s", i, v->failed);
}

static void serial_out(struct mig_kvm *m, const uint8_t *d, size_t n)
{
	unsigned dropped;

	pthread_mutex_lock(&m->lock);
	if (m->serial_fd >= 0) {
		if (write(m->serial_fd, d, n) != (ssize_t)n &&
		    mig_ratelimit_ok(&m->serial_rl, 1000, &dropped))
			mig_warn("guest", "serial output: %s", strerror(errno));
		pthread_mutex_unlock(&m->lock);
		return;
	}
	for (size_t k = 0; k < n; k++) {
		m->line[m->line_len++] = d[k] >= 0x20 && d[k] < 0x7f ? (char)d[k] : '.';
		if (m->line_len < SERIAL_LINE && d[k] != '\n')
			continue;
		m->line[m->line_len] = '\0';
		m->line_len = 0;
		if (mig_ratelimit_ok(&m->serial_rl, 1000, &dropped))
			mig_info("guest", "serial: %s", m->line);
	}
	pthread_mutex_unlock(&m->lock);
}

static uint8_t cmos(const struct mig_kvm *m, uint8_t reg)
{
	uint64_t low = (m->low_end - (16u << 20)) >> 16;
	uint64_t high = (m->ram_bytes - m->low_end) >> 16;

	switch (reg) {
	case 0x34: return (uint8_t)low;
	case 0x35: return (uint8_t)(low >> 8);
	case 0x5b: return (uint8_t)high;
	case 0x5c: return (uint8_t)(high >> 8);
	case 0x5d: return (uint8_t)(high >> 16);
	default: return 0;
	}
}

static void io(struct mig_kvm *m, unsigned i)
{
	struct vcpu *v = &m->v[i];
	struct kvm_run *r = v->run;
	uint8_t *d = (uint8_t *)r + r->io.data_offset;
	size_t n = (size_t)r->io.size * r->io.count;
	bool out = r->io.direction == KVM_EXIT_IO_OUT;

	if (out) {
		if (r->io.port == MIG_KVM_SERIAL_PORT) {
			serial_out(m, d, n);
			atomic_fetch_add(&v->passes, n);
		} else if (r->io.port == 0x70) {
			v->cmos_idx = d[0] & 0x7f;
		} else if (r->io.port == MIG_KVM_INFO_PORT) {
			v->booted = true;
		}
		return; /* anything else: nobody there */
	}
	memset(d, 0xff, n); /* nobody there reads all ones */
	if (r->io.port == 0x71)
		d[0] = cmos(m, v->cmos_idx);
	else if (r->io.port == 0x92)
		d[0] = 0x02; /* A20 on */
	else if (r->io.port == MIG_KVM_INFO_PORT && n == 4)
		mig_put_le32(d, ~(i | (m->nvcpus - 1) << 16));
}

static void handle_exit(struct mig_kvm *m, unsigned i)
{
	struct kvm_run *r = m->v[i].run;

	switch (r->exit_reason) {
	case KVM_EXIT_IO: io(m, i); break;
	case KVM_EXIT_INTR: break;
	case KVM_EXIT_HLT: fail(m, i, "the guest halted"); break;
	case KVM_EXIT_SHUTDOWN: fail(m, i, "the guest shut down (triple fault)"); break;
	case KVM_EXIT_FAIL_ENTRY:
		fail(m, i, "entry failed, hardware reason 0x%llx",
		     (unsigned long long)r->fail_entry.hardware_entry_failure_reason);
		break;
	case KVM_EXIT_INTERNAL_ERROR:
		fail(m, i, "KVM internal error %u", r->internal.suberror);
		break;
	case KVM_EXIT_MMIO:
		fail(m, i, "an access to 0x%llx, where nothing is",
		     (unsigned long long)r->mmio.phys_addr);
		break;
	default: fail(m, i, "KVM exit %u", r->exit_reason); break;
	}
}

static void set_thread(struct mig_kvm *m, struct vcpu *v, bool in_run)
{
	pthread_mutex_lock(&m->lock);
	v->thread = pthread_self();
	v->in_run = in_run;
	pthread_mutex_unlock(&m->lock);
}

void mig_kvm_run(struct mig_kvm *m, unsigned i, const atomic_bool *stop)
{
	struct vcpu *v = &m->v[i];
	struct timespec nap = { 0, 100 * 1000000L };
	sigset_t kick;
	int r;

	sigemptyset(&kick);
	sigaddset(&kick, KICK_SIGNAL);
	pthread_sigmask(SIG_UNBLOCK, &kick, NULL);
	set_thread(m, v, true);
	while (!atomic_load_explicit(stop, memory_order_acquire)) {
		if (v->failed[0]) {
			nanosleep(&nap, NULL); /* the kick cuts it short */
			continue;
		}
		if (ioctl(v->fd, KVM_RUN, 0) == 0) {
			handle_exit(m, i);
			continue;
		}
		if (errno == EINTR || errno == EAGAIN)
			__atomic_store_n(&v->run->immediate_exit, 0, __ATOMIC_SEQ_CST);
		else
			fail(m, i, "KVM_RUN: %s", strerror(errno));
	}
	r = v->failed[0] ? 0 : kvm_snapshot(m, i);
	if (r < 0)
		fail(m, i, "reading its state: %s", strerror(-r));
	set_thread(m, v, false);
}

void mig_kvm_kick(struct mig_kvm *m)
{
	pthread_mutex_lock(&m->lock);
	for (unsigned i = 0; i < m->nvcpus; i++) {
		struct vcpu *v = &m->v[i];

		__atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
		if (v->in_run)
			pthread_kill(v->thread, KICK_SIGNAL);
	}
	pthread_mutex_unlock(&m->lock);
}
