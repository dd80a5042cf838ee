# SPDX-License-Identifier: MIT
# mig: one non-recursive Makefile. `make help` lists the targets.

PREFIX      ?= /usr/local
BINDIR      ?= $(PREFIX)/bin
MANDIR      ?= $(PREFIX)/share/man
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
ZSHCOMPDIR  ?= $(PREFIX)/share/zsh/vendor-completions
DATADIR     ?= $(PREFIX)/share/mig
DESTDIR     ?=

CC       ?= cc
PKG_CONFIG ?= pkg-config
VERSION  := 0.1.0

# WERROR=1 is on in CI; SANITIZE=1 builds with ASan+UBSan into build/san,
# SANITIZE=thread with ThreadSanitizer into build/tsan.
WERROR   ?= $(if $(CI),1,0)
SANITIZE ?= 0
V        ?= 0

ifeq ($(SANITIZE),1)
B := build/san
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
else ifeq ($(SANITIZE),thread)
B := build/tsan
SANFLAGS := -fsanitize=thread -fno-omit-frame-pointer
else
B := build
SANFLAGS :=
endif

ifeq ($(V),1)
Q :=
else
Q := @
endif

PKGS := libcjson liblz4 libcurl gnutls
# Debian package that provides each pkg-config name / command.
DEB_libcjson := libcjson-dev
DEB_liblz4   := liblz4-dev
DEB_libcurl  := libcurl4-openssl-dev
DEB_gnutls   := libgnutls28-dev
DEB_cmocka   := libcmocka-dev
DEB_CMDS     := bats:bats socat:socat mandoc:mandoc jq:jq pkg-config:pkg-config python3:python3 ip:iproute2 script:bsdutils \
	pgrep:procps zsh:zsh clang:clang certtool:gnutls-bin as:binutils ld:binutils objcopy:binutils
# make bench's alone, so that make check never pulls QEMU in.
BENCH_DEB_CMDS := qemu-system-x86_64:qemu-system-x86

PKG_CFLAGS = $(shell $(PKG_CONFIG) --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell $(PKG_CONFIG) --libs $(PKGS) 2>/dev/null)
CMOCKA_LIBS = $(shell $(PKG_CONFIG) --libs cmocka 2>/dev/null)

WARN := -Wall -Wextra -Wformat=2 -Wshadow -Wvla -Wmissing-prototypes \
	-Wstrict-prototypes -Wpointer-arith -Wundef -Wno-unused-parameter
ifeq ($(WERROR),1)
WARN += -Werror
endif
CFLAGS  ?= -O2 -g
CFLAGS  += -std=gnu11 $(WARN) -D_GNU_SOURCE -DMIG_VERSION='"$(VERSION)"' \
	   -pthread -MMD -MP -Ilib $(SANFLAGS)
LDFLAGS += -pthread $(SANFLAGS)

PROGS    := mig-guest mig-send mig-recv mig-pause mig-recover mig-status
LIB_SRCS := $(wildcard lib/*/*.c)
# The bus schema is JSON, compiled in as a string (od: coreutils, always
# there); the kvm workload's guest is a boot sector, compiled in as bytes.
GEN_OBJS := $(B)/gen/schema.o $(B)/gen/abguest.o
LIB_OBJS := $(LIB_SRCS:lib/%.c=$(B)/lib/%.o) $(GEN_OBJS)
BINS     := $(PROGS:%=$(B)/bin/%)
UNIT_SRCS := $(wildcard tests/unit/test-*.c)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(B)/tests/%)
# Test helper programs (stress drivers linking libmig), run by bats files.
HELPER_SRCS := $(wildcard tests/helpers/*.c)
HELPER_BINS := $(HELPER_SRCS:tests/helpers/%.c=$(B)/tests/helpers/%)
BENCH_SRCS := $(wildcard bench/*.c)
BENCH_BINS := $(BENCH_SRCS:bench/%.c=$(B)/bench/%)
BENCH_IMG  := $(B)/gen/abguest.img

# Fuzzing: libFuzzer harnesses (tests/fuzz), built with clang into build/fuzz
# against libmig's sources compiled again with ASan+UBSan and coverage.
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FB           := build/fuzz
FUZZ_CC_PATH := $(shell command -v $(FUZZ_CC) 2>/dev/null)
FUZZ_CFLAGS  := -O1 -g -std=gnu11 $(WARN) -D_GNU_SOURCE -DMIG_VERSION='"$(VERSION)"' \
	-pthread -MMD -MP -Ilib -fno-omit-frame-pointer \
	-fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_SRCS    := $(wildcard tests/fuzz/fuzz-*.c)
FUZZ_BINS    := $(FUZZ_SRCS:tests/fuzz/%.c=$(FB)/%)
FUZZ_LIB_OBJS := $(LIB_SRCS:lib/%.c=$(FB)/lib/%.o) $(FB)/gen/schema.o $(FB)/gen/abguest.o

.PHONY: all deps bench-deps check-deps demo check unit bats manlint headers bench fuzz fuzz-build \
	install uninstall clean help
.DEFAULT_GOAL := all

all: check-deps $(BINS) $(HELPER_BINS)

help:
	@echo "make, make all  build the programs into $(B)/bin"
	@echo "make deps       install missing build/test dependencies (apt-get, as root)"
	@echo "make bench-deps install what make bench alone needs: QEMU, binutils (as root)"
	@echo "make check-deps fail unless the build dependencies are present"
	@echo "make demo       migrate a 512 MiB guest over loopback with postcopy"
	@echo "make check      unit tests, headers, man page lint, bats integration tests"
	@echo "make unit       the unit tests (cmocka) only"
	@echo "make headers    check every lib/*/*.h compiles on its own"
	@echo "make manlint    lint the man pages (mandoc)"
	@echo "make bats       the integration tests (bats) only"
	@echo "make bench      benchmarks (not part of check; installs QEMU for its qemu scenario)"
	@echo "make fuzz       each libFuzzer harness for FUZZ_SECONDS=$(FUZZ_SECONDS) (clang)"
	@echo "make install    PREFIX=$(PREFIX) DESTDIR=$(DESTDIR)"
	@echo "make uninstall  remove what install put there"
	@echo "make clean      remove build/"
	@echo "make help       this list"
	@echo "options: WERROR=1, SANITIZE=1 (ASan+UBSan), SANITIZE=thread (TSan), V=1"

# Which commands of the list $(1) (command:package ...) are missing, as
# Debian package names; and which dependencies of the build and make check.
missing_cmds = $(sort $(foreach c,$(1),$(if $(shell command -v $(firstword $(subst :, ,$(c))) 2>/dev/null),,$(lastword $(subst :, ,$(c))))))
missing_pkgs = $(strip $(foreach p,$(PKGS) cmocka,$(if $(shell $(PKG_CONFIG) --exists $(p) 2>/dev/null && echo y),,$(DEB_$(p)))) \
	$(call missing_cmds,$(DEB_CMDS)))

# apt_install TARGET,PACKAGES: install them as root, or say how.
define apt_install
	@missing="$(2)"; \
	if [ -z "$$missing" ]; then echo "$(1): all present"; exit 0; fi; \
	cmd="apt-get install -y --no-install-recommends $$missing"; \
	if [ "$$(id -u)" -ne 0 ]; then \
		echo "$(1): missing: $$missing"; echo "$(1): run as root: apt-get update && $$cmd"; exit 1; fi; \
	echo "$(1): installing $$missing"; \
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$cmd -qq
endef

deps:
	$(call apt_install,deps,$(missing_pkgs))

bench-deps:
	$(call apt_install,bench-deps,$(call missing_cmds,$(BENCH_DEB_CMDS)))

check-deps:
	@command -v $(PKG_CONFIG) >/dev/null 2>&1 && $(PKG_CONFIG) --exists $(PKGS) || { \
		echo "missing build dependencies; run 'make deps' (as root) first"; exit 1; }

$(B)/lib/%.o: lib/%.c
	@mkdir -p $(@D)
	@[ "$(V)" = 1 ] || echo "  CC      $<"
	$(Q)$(CC) $(CFLAGS) $(PKG_CFLAGS) -c -o $@ $<

$(B)/cmd/%.o: cmd/%.c
	@mkdir -p $(@D)
	@[ "$(V)" = 1 ] || echo "  CC      $<"
	$(Q)$(CC) $(CFLAGS) -c -o $@ $<

$(B)/gen/schema.c $(FB)/gen/schema.c: lib/engine/schema.json
	@mkdir -p $(@D)
	@[ "$(V)" = 1 ] || echo "  GEN     $@"
	$(Q){ echo '/* generated from $< by make: do not edit */'; \
	  echo '#include "engine/schema.h"'; echo 'const char mig_schema_json[] = {'; \
	  od -An -v -tx1 $< | sed 's/\([0-9a-f][0-9a-f]\)/0x\1,/g'; echo '0 };'; } > $@.tmp
	$(Q)mv $@.tmp $@

$(B)/gen/%.o: $(B)/gen/%.c
	@[ "$(V)" = 1 ] || echo "  CC      $<"
	$(Q)$(CC) $(CFLAGS) -c -o $@ $<

$(B)/libmig.a: $(LIB_OBJS)
	@[ "$(V)" = 1 ] || echo "  AR      $@"
	$(Q)rm -f $@ && ar rcs $@ $^

$(B)/bin/%: $(B)/cmd/%.o $(B)/libmig.a
	@mkdir -p $(@D)
	@[ "$(V)" = 1 ] || echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS) -o $@ $< $(B)/libmig.a $(PKG_LIBS)

$(B)/tests/%: tests/unit/%.c $(B)/libmig.a
	@mkdir -p $(@D)
	@[ "$(V)" = 1 ] || echo "  CC      $<"
	$(Q)$(CC) $(CFLAGS) $(PKG_CFLAGS) -o $@ $< $(B)/libmig.a $(PKG_LIBS) $(CMOCKA_LIBS) $(LDFLAGS)

$(B)/tests/helpers/%: tests/helpers/%.c $(B)/libmig.a
	@mkdir -p $(@D)
	@[ "$(V)" = 1 ] || echo "  CC      $<"
	$(Q)$(CC) $(CFLAGS) $(PKG_CFLAGS) -o $@ $< $(B)/libmig.a $(PKG_LIBS) $(LDFLAGS)

$(B)/bench/%: bench/%.c $(B)/libmig.a
	@mkdir -p $(@D)
	$(Q)$(CC) $(CFLAGS) $(PKG_CFLAGS) -o $@ $< $(B)/libmig.a $(PKG_LIBS) $(LDFLAGS)

# The kvm workload's guest, which QEMU boots too in make bench: a boot
# sector, so exactly 512 bytes ending in 55 aa (a BIOS boots nothing else);
# binutils only, no C compiler.
%/gen/abguest.img: lib/guest/abguest.S
	@mkdir -p $(@D)
	@[ "$(V)" = 1 ] || echo "  AS      $@"
	$(Q)as --64 -o $(@:.img=.o.tmp) $<
	$(Q)ld -m elf_x86_64 -Ttext=0x7c00 -e start -o $(@:.img=.elf) $(@:.img=.o.tmp)
	$(Q)objcopy -O binary -j .text $(@:.img=.elf) $@.tmp
	$(Q)[ "$$(stat -c %s $@.tmp)" -eq 512 ] && [ "$$(od -An -j510 -tx1 $@.tmp | tr -d ' ')" = 55aa ] || \
		{ echo "$@: not a 512-byte boot sector ending in 55 aa"; rm -f $@.tmp; exit 1; }
	$(Q)mv $@.tmp $@

%/gen/abguest.c: %/gen/abguest.img
	@[ "$(V)" = 1 ] || echo "  GEN     $@"
	$(Q){ echo '/* generated from lib/guest/abguest.S by make: do not edit */'; \
	  echo '#include "guest/kvm.h"'; \
	  echo 'const unsigned char mig_abguest_img[MIG_KVM_IMG_BYTES] = {'; \
	  od -An -v -tx1 $< | sed 's/\([0-9a-f][0-9a-f]\)/0x\1,/g'; echo '};'; } > $@.tmp
	$(Q)mv $@.tmp $@

$(FB)/lib/%.o: lib/%.c
	@mkdir -p $(@D)
	@[ "$(V)" = 1 ] || echo "  FUZZCC  $<"
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link $(PKG_CFLAGS) -c -o $@ $<

$(FB)/gen/%.o: $(FB)/gen/%.c
	@[ "$(V)" = 1 ] || echo "  FUZZCC  $<"
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) -c -o $@ $<

$(FB)/libmig.a: $(FUZZ_LIB_OBJS)
	@[ "$(V)" = 1 ] || echo "  AR      $@"
	$(Q)rm -f $@ && ar rcs $@ $^

$(FB)/fuzz-%: tests/fuzz/fuzz-%.c $(FB)/libmig.a
	@[ "$(V)" = 1 ] || echo "  FUZZLD  $@"
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer $(PKG_CFLAGS) -o $@ $< \
		$(FB)/libmig.a $(PKG_LIBS)

ifeq ($(FUZZ_CC_PATH),)
fuzz-build:
	@echo "fuzz: $(FUZZ_CC) missing; run 'make deps' (as root)"; exit 1
else
fuzz-build: check-deps $(FUZZ_BINS)
endif

# Each harness for FUZZ_SECONDS over a copy of its corpus (build/fuzz/corpus).
fuzz: fuzz-build
	@tests/fuzz/run.sh $(FB) $(FUZZ_SECONDS)

demo: deps all
	@MIG_BIN=$(CURDIR)/$(B)/bin examples/quickstart.sh

# The whole test run: every suite, then one "N passed, N failed" line.
# SANITIZE=thread: the unit tests and the migration, recovery, signal, TLS,
# zero-page, bulk-channel and KVM suites under ThreadSanitizer; any report it
# writes fails the run.
TSAN_BATS := tests/bats/migrate.bats tests/bats/recover.bats tests/bats/signals.bats \
	tests/bats/tls.bats tests/bats/zero.bats tests/bats/channels.bats tests/bats/kvm.bats
# The fuzz suite runs each harness over its corpus; without clang it skips.
check: deps all $(UNIT_BINS)
ifeq ($(SANITIZE),thread)
	@rm -rf $(B)/tsan-logs && mkdir -p $(B)/tsan-logs
	@TSAN_OPTIONS="log_path=$(CURDIR)/$(B)/tsan-logs/report second_deadlock_stack=1" \
		MIG_TSAN_LOGS=$(CURDIR)/$(B)/tsan-logs MIG_BATS_FILES="$(TSAN_BATS)" \
		MIG_BIN=$(CURDIR)/$(B)/bin MIG_UNIT_DIR=$(CURDIR)/$(B)/tests \
		tests/run-all.sh unit bats tsan
else
	@# clang is looked for now, not when make read this file: deps may
	@# have just installed it
	@fuzz=; if command -v $(FUZZ_CC) >/dev/null 2>&1; then \
		$(MAKE) --no-print-directory fuzz-build || exit 1; fuzz=$(CURDIR)/$(FB); fi; \
	MIG_BIN=$(CURDIR)/$(B)/bin MIG_UNIT_DIR=$(CURDIR)/$(B)/tests \
		MIG_FUZZ_DIR=$$fuzz tests/run-all.sh
endif

unit: all $(UNIT_BINS)
	@MIG_UNIT_DIR=$(CURDIR)/$(B)/tests tests/run-all.sh unit

bats: all
	@MIG_BIN=$(CURDIR)/$(B)/bin tests/run-all.sh bats

manlint:
	@tests/run-all.sh man

# Every public header compiles on its own.
headers:
	@tests/run-all.sh headers

bench: deps bench-deps all $(BENCH_BINS) $(BENCH_IMG)
	@MIG_BIN=$(CURDIR)/$(B)/bin MIG_BENCH_DIR=$(CURDIR)/$(B)/bench \
		MIG_GUEST_IMG=$(CURDIR)/$(BENCH_IMG) bench/run.sh

MANS1    := $(wildcard man/*.1)
MANS7    := $(wildcard man/*.7)
EXAMPLES := $(wildcard examples/*.sh)
SYSTEMD  := $(wildcard examples/systemd/*)

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man7 \
		$(DESTDIR)$(BASHCOMPDIR) $(DESTDIR)$(ZSHCOMPDIR) $(DESTDIR)$(DATADIR) \
		$(DESTDIR)$(DATADIR)/systemd
	install -m 0755 $(BINS) $(DESTDIR)$(BINDIR)/
	install -m 0644 $(MANS1) $(DESTDIR)$(MANDIR)/man1/
	install -m 0644 $(MANS7) $(DESTDIR)$(MANDIR)/man7/
	install -m 0644 $(wildcard completions/bash/*) $(DESTDIR)$(BASHCOMPDIR)/
	install -m 0644 $(wildcard completions/zsh/_*) $(DESTDIR)$(ZSHCOMPDIR)/
	install -m 0755 $(EXAMPLES) $(DESTDIR)$(DATADIR)/
	install -m 0644 $(SYSTEMD) $(DESTDIR)$(DATADIR)/systemd/

uninstall:
	rm -f $(PROGS:%=$(DESTDIR)$(BINDIR)/%) $(PROGS:%=$(DESTDIR)$(BASHCOMPDIR)/%) \
		$(PROGS:%=$(DESTDIR)$(ZSHCOMPDIR)/_%) \
		$(MANS1:man/%=$(DESTDIR)$(MANDIR)/man1/%) \
		$(MANS7:man/%=$(DESTDIR)$(MANDIR)/man7/%) \
		$(EXAMPLES:examples/%=$(DESTDIR)$(DATADIR)/%) \
		$(SYSTEMD:examples/%=$(DESTDIR)$(DATADIR)/%)
	-rmdir $(DESTDIR)$(DATADIR)/systemd $(DESTDIR)$(DATADIR) 2>/dev/null

clean:
	rm -rf build

.SECONDARY:
-include $(LIB_OBJS:.o=.d) $(BINS:$(B)/bin/%=$(B)/cmd/%.d) $(UNIT_BINS:%=%.d) \
	$(HELPER_BINS:%=%.d) $(FUZZ_LIB_OBJS:.o=.d) $(FUZZ_BINS:%=%.d)
