// SPDX-License-Identifier: MIT
/*
 * teardown-stress: an incoming mig-guest must exit on QUIT or SIGTERM
 * whatever its vCPUs are doing in userfaults at that moment.
 *
 * Each round spawns `mig-guest --incoming`, claims it, takes its uffd,
 * loads an ab state blob and CONTs it, so the vCPUs fault on missing pages.
 * A server thread then places pages as they are asked for (none, one, or a
 * few per fault, by round), which keeps the vCPUs running into fresh faults
 * all the time. After a random delay (up to --max-delay-us) the guest is
 * told to go: QUIT and SIGTERM alternate, and every other run of six rounds
 * first ends the incoming phase (INCOMING_DONE, which unregisters RAM with
 * the vCPUs still running). It must exit, with status 0, within --hang-ms;
 * one that does not is a hang: its threads' kernel wait channels are
 * printed, it is killed (SIGKILL) and the run fails.
 *
 * Bounded everywhere: every wait has a timeout, and no round starts after
 * --seconds. Prints one summary line; exit 0 only if every round was clean.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "guest/guest.h"
#include "core/uffd.h"
#include "base/util.h"
#include "guest/workload.h"

#define READY_MS 5000
#define CTL_MS 3000
#define MAX_BATCH 8 /* pages placed per fault, at most */

struct opts {
	const char *guest, *dir;
	uint64_t ram;
	unsigned rounds, vcpus, seconds, hang_ms, max_delay_us;
	bool keep_going;
};

struct server {
	int uffd;
	uint64_t ram_base, ram_bytes;
	unsigned batch; /* pages placed per fault; 0: serve nothing */
	atomic_bool stop;
	pthread_t tid;
};

struct tally {
	unsigned rounds, quits, terms, dones, hangs, bad;
};

/* What round r does: QUIT or SIGTERM, pages placed per fault, and whether
 * INCOMING_DONE comes first. */
static bool by_sigterm(unsigned r)
{
	return r % 2;
}

static unsigned batch_of(unsigned r)
{
	static const unsigned b[] = { 0, 1, MAX_BATCH };

	return b[(r / 2) % MIG_ARRAY_SIZE(b)];
}

static bool done_first(unsigned r)
{
	return (r / 6) % 2;
}

static const uint8_t zero_page[MAX_BATCH * MIG_PAGE_SIZE];

static void usage(void)
{
	fprintf(stderr,
		"usage: teardown-stress --guest MIG-GUEST --dir DIR [--rounds N]\n"
		"       [--seconds S] [--ram SIZE] [--vcpus N] [--hang-ms MS]\n"
		"       [--max-delay-us US] [--keep-going]\n");
}

static int parse(int argc, char **argv, struct opts *o)
{
	static const struct option lo[] = {
		{ "guest", required_argument, NULL, 'g' },
		{ "dir", required_argument, NULL, 'd' },
		{ "rounds", required_argument, NULL, 'n' },
		{ "seconds", required_argument, NULL, 's' },
		{ "ram", required_argument, NULL, 'r' },
		{ "vcpus", required_argument, NULL, 'c' },
		{ "hang-ms", required_argument, NULL, 'h' },
		{ "max-delay-us", required_argument, NULL, 'D' },
		{ "keep-going", no_argument, NULL, 'k' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		unsigned long v = optarg ? strtoul(optarg, NULL, 0) : 0;

		switch (c) {
		case 'g': o->guest = optarg; break;
		case 'd': o->dir = optarg; break;
		case 'n': o->rounds = (unsigned)v; break;
		case 's': o->seconds = (unsigned)v; break;
		case 'r':
			if (mig_parse_size(optarg, &o->ram) < 0)
				return -1;
			break;
		case 'c': o->vcpus = (unsigned)v; break;
		case 'h': o->hang_ms = (unsigned)v; break;
		case 'D': o->max_delay_us = (unsigned)v; break;
		case 'k': o->keep_going = true; break;
		default: return -1;
		}
	}
	if (!o->guest || !o->dir || !o->ram || o->ram % MIG_PAGE_SIZE ||
	    !o->vcpus || o->vcpus > MIG_WORKLOAD_MAX_VCPUS)
		return -1;
	return 0;
}

/* --- the guest process -------------------------------------------------- */

static void child_exec(const struct opts *o, const char *ctl, int logfd, int wfd)
{
	char ram[32], vcpus[16], ready[16];

	snprintf(ram, sizeof(ram), "%" PRIu64, o->ram);
	snprintf(vcpus, sizeof(vcpus), "%u", o->vcpus);
	snprintf(ready, sizeof(ready), "%d", wfd);
	dup2(logfd, STDOUT_FILENO);
	dup2(logfd, STDERR_FILENO);
	fcntl(wfd, F_SETFD, 0);
	execl(o->guest, "mig-guest", "--ctl", ctl, "--ram", ram, "--incoming",
	      "--vcpus", vcpus, "--ready-fd", ready, (char *)NULL);
	_exit(127);
}

/* Guest pid once it is ready, or -1 (reaped). Its log goes to logpath. */
static pid_t spawn_guest(const struct opts *o, const char *ctl, const char *logpath)
{
	int p[2], logfd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	struct pollfd pf;
	pid_t pid;
	char c;

	if (logfd < 0 || pipe2(p, O_CLOEXEC) < 0) {
		perror("teardown-stress: log/pipe");
		return -1;
	}
	pid = fork();
	if (pid == 0)
		child_exec(o, ctl, logfd, p[1]);
	close(logfd);
	close(p[1]);
	pf = (struct pollfd){ .fd = p[0], .events = POLLIN };
	if (pid > 0 && poll(&pf, 1, READY_MS) == 1 && read(p[0], &c, 1) == 1) {
		close(p[0]);
		return pid;
	}
	close(p[0]);
	fprintf(stderr, "teardown-stress: mig-guest did not become ready (log: %s)\n",
		logpath);
	if (pid > 0) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
	}
	return -1;
}

/* Claim, take the uffd, load an ab state for our vCPUs, CONT. */
static int drive_guest(const struct opts *o, struct mig_guest *g, int *uffd)
{
	struct mig_workload_spec spec;
	struct mig_workload_state st;
	uint8_t *blob = NULL;
	size_t len = 0;
	int memfd = -1, r;

	mig_guest_set_timeout(g, CTL_MS);
	r = mig_guest_attach(g, NULL);
	if (r == 0)
		r = mig_guest_get_fds(g, &memfd, uffd);
	if (memfd >= 0)
		close(memfd);
	if (r == 0 && *uffd < 0)
		r = -EPROTO;
	if (r == 0)
		r = mig_workload_parse("ab", &spec);
	if (r == 0) {
		mig_workload_state_init(&st, &spec, o->ram, o->vcpus);
		r = mig_workload_state_encode(&st, &blob, &len);
	}
	if (r == 0)
		r = mig_guest_load_state(g, blob, len);
	if (r == 0)
		r = mig_guest_cont(g);
	free(blob);
	return r;
}

/* --- the engine's part: place pages as the vCPUs fault ------------------ */

static void serve_one(struct server *s, uint64_t addr)
{
	uint64_t end = s->ram_base + s->ram_bytes;
	size_t len = (size_t)s->batch * MIG_PAGE_SIZE;

	if (addr + len > end)
		len = (size_t)(end - addr);
	/* errors (the range unregistered, the process gone) end nothing:
	 * the round's outcome is the guest's exit */
	mig_uffd_copy(s->uffd, addr, zero_page, len);
}

static void *serve_main(void *arg)
{
	struct server *s = arg;

	while (!atomic_load(&s->stop)) {
		struct pollfd p = { .fd = s->uffd, .events = POLLIN };
		uint64_t addr;

		if (poll(&p, 1, 1) <= 0)
			continue;
		if (mig_uffd_read_fault(s->uffd, &addr) == 1 && s->batch)
			serve_one(s, addr);
	}
	return NULL;
}

/* --- one round ---------------------------------------------------------- */

/* 0: exited (status in *st); 1: still there after hang_ms. */
static int wait_gone(pid_t pid, unsigned hang_ms, int *st)
{
	uint64_t end = mig_now_ns() + (uint64_t)hang_ms * 1000000u;

	while (mig_now_ns() < end) {
		pid_t r = waitpid(pid, st, WNOHANG);

		if (r == pid || (r < 0 && errno != EINTR))
			return 0;
		nanosleep(&(struct timespec){ .tv_nsec = 1000000 }, NULL);
	}
	return 1;
}

static void print_file(const char *what, const char *path)
{
	char line[256];
	FILE *f = fopen(path, "r");

	if (!f)
		return;
	if (fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = '\0';
		fprintf(stderr, "    %s %s\n", what, line);
	}
	fclose(f);
}

/* Where every thread of a hung guest sleeps in the kernel. */
static void report_hang(pid_t pid)
{
	char dir[64], path[512];
	struct dirent *e;
	DIR *d;

	snprintf(dir, sizeof(dir), "/proc/%d/task", (int)pid);
	d = opendir(dir);
	if (!d)
		return;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		fprintf(stderr, "  thread %s:\n", e->d_name);
		snprintf(path, sizeof(path), "%s/%s/comm", dir, e->d_name);
		print_file("comm", path);
		snprintf(path, sizeof(path), "%s/%s/wchan", dir, e->d_name);
		print_file("wchan", path);
	}
	closedir(d);
}

static void keep_log(const struct opts *o, const char *log, const char *what,
		     unsigned round)
{
	char path[4096];

	snprintf(path, sizeof(path), "%s/stress-%s-%u.log", o->dir, what, round);
	if (rename(log, path) == 0)
		fprintf(stderr, "  guest log: %s\n", path);
}

/* The guest is told to go; judge how it went. */
static void judge(const struct opts *o, pid_t pid, unsigned round,
		  const char *log, struct tally *t)
{
	int st = 0;

	if (wait_gone(pid, o->hang_ms, &st)) {
		fprintf(stderr, "teardown-stress: round %u: guest pid %d still there "
			"%u ms after %s%s (%u pages per fault): hang\n", round,
			(int)pid, o->hang_ms, done_first(round) ? "INCOMING_DONE, " : "",
			by_sigterm(round) ? "SIGTERM" : "QUIT", batch_of(round));
		report_hang(pid);
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		keep_log(o, log, "hang", round);
		t->hangs++;
	} else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		fprintf(stderr, "teardown-stress: round %u: guest exited badly "
			"(status 0x%x)\n", round, st);
		keep_log(o, log, "bad", round);
		t->bad++;
	}
}

static void tell_to_go(struct mig_guest *g, pid_t pid, unsigned round,
		       struct tally *t)
{
	int r = 0;

	if (done_first(round)) {
		r = mig_guest_incoming_done(g);
		if (r < 0)
			fprintf(stderr, "teardown-stress: round %u: INCOMING_DONE: %s\n",
				round, strerror(-r));
		t->dones++;
	}
	if (!by_sigterm(round)) {
		r = mig_guest_quit(g);
		if (r < 0)
			fprintf(stderr, "teardown-stress: round %u: QUIT: %s\n",
				round, strerror(-r));
		t->quits++;
	} else {
		kill(pid, SIGTERM);
		t->terms++;
	}
}

/* 0 ran (clean or not: see the tally), -1 could not set up. */
static int round_run(const struct opts *o, unsigned round, struct tally *t)
{
	char ctl[4096], log[4096];
	struct mig_guest_info in;
	struct server s = { .uffd = -1 };
	struct mig_guest *g = NULL;
	pid_t pid;
	int r;

	snprintf(ctl, sizeof(ctl), "%s/stress.ctl", o->dir);
	snprintf(log, sizeof(log), "%s/stress-guest.log", o->dir);
	pid = spawn_guest(o, ctl, log);
	if (pid < 0)
		return -1;
	g = mig_guest_connect(ctl, CTL_MS);
	r = g ? drive_guest(o, g, &s.uffd) : -errno;
	if (r == 0)
		r = mig_guest_info(g, &in);
	if (r < 0) {
		fprintf(stderr, "teardown-stress: round %u: setting up: %s\n",
			round, strerror(-r));
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		mig_guest_close(g);
		return -1;
	}
	s.ram_base = in.ram_base;
	s.ram_bytes = in.ram_bytes;
	/* vary what the vCPUs do when the quit comes: all blocked in their
	 * first fault, or running into a fresh fault page after page */
	s.batch = batch_of(round);
	pthread_create(&s.tid, NULL, serve_main, &s);
	if (o->max_delay_us)
		usleep((useconds_t)(random() % o->max_delay_us));
	tell_to_go(g, pid, round, t);
	judge(o, pid, round, log, t);
	atomic_store(&s.stop, true);
	pthread_join(s.tid, NULL);
	close(s.uffd);
	mig_guest_close(g);
	t->rounds++;
	return 0;
}

int main(int argc, char **argv)
{
	struct opts o = { .ram = 64u << 20, .rounds = 100000, .vcpus = 2,
			  .seconds = 20, .hang_ms = 3000, .max_delay_us = 5000 };
	struct tally t = { 0 };
	uint64_t t0 = mig_now_ns(), end;

	if (parse(argc, argv, &o) < 0) {
		usage();
		return 64;
	}
	srandom((unsigned)getpid());
	signal(SIGPIPE, SIG_IGN);
	end = t0 + (uint64_t)o.seconds * 1000000000u;
	for (unsigned i = 0; i < o.rounds && mig_now_ns() < end; i++) {
		if (round_run(&o, i, &t) < 0)
			return 2;
		if ((t.hangs || t.bad) && !o.keep_going)
			break;
	}
	printf("teardown-stress: %u rounds (%u QUIT, %u SIGTERM, %u after "
	       "INCOMING_DONE) in %.1f s: %u hangs, %u bad exits\n", t.rounds,
	       t.quits, t.terms, t.dones, (mig_now_ns() - t0) / 1e9, t.hangs, t.bad);
	return t.hangs || t.bad ? 1 : 0;
}
