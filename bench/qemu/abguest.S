/* SPDX-License-Identifier: MIT */
/*
 * abguest: the QEMU side of bench/run.sh's `qemu` scenario, a 512-byte
 * boot sector that keeps all of a guest's RAM dirty as mig-guest's ab
 * workload does ours: forever, add one to a 32-bit counter at the start of
 * every 4 KiB page from 1 MiB to the end of RAM, then write 'B' to the
 * serial port, so that the host sees each completed pass.
 *
 * The RAM's size comes from the CMOS, where QEMU's pc machine leaves it for
 * the BIOS (0x34/0x35: 64 KiB blocks between 16 MiB and the end of low RAM;
 * 0x5b-0x5d: 64 KiB blocks above 4 GiB), so one image serves every -m. With
 * -m 4G the pc machine keeps 3 GiB below the PCI hole and maps the last
 * GiB at 4 GiB: reaching it takes long mode, identity-mapped here with
 * 2 MiB pages up to MAP_END (8 GiB: with -m above 7G the rest is not
 * walked; the bench runs 1G and 4G). Below 1 MiB nothing is written: the page
 * tables, this code, the BIOS and the VGA hole are there.
 *
 * Built with binutils alone, no preprocessor (the Makefile's bench target):
 *   as --64 -o abguest.o abguest.S
 *   ld -m elf_x86_64 -Ttext=0x7c00 -e start -o abguest.elf abguest.o
 *   objcopy -O binary -j .text abguest.elf abguest.img
 */

	.equ	SERIAL, 0x3f8
	.equ	CMOS_IDX, 0x70
	.equ	CMOS_DAT, 0x71
	.equ	PML4, 0x1000	/* one page */
	.equ	PDPT, 0x2000	/* one page */
	.equ	PD, 0x10000	/* MAP_GIB pages, one per GiB */
	.equ	MAP_GIB, 8
	.equ	MAP_END, (MAP_GIB << 30)
	.equ	START, 0x100000	/* 1 MiB */

	.text
	.code16
	.globl start
start:
	cli
	xorw	%ax, %ax
	movw	%ax, %ds
	movw	%ax, %es
	movw	%ax, %ss
	movw	$0x7c00, %sp

	/* A20 through the "fast A20" port (bit 1); bit 0 would reset */
	inb	$0x92, %al
	orb	$2, %al
	andb	$0xfe, %al
	outb	%al, $0x92

	lgdt	gdt_desc
	movl	%cr0, %eax
	orl	$1, %eax		/* PE */
	movl	%eax, %cr0
	ljmp	$0x08, $pm32

	.code32
pm32:
	movw	$0x10, %ax
	movw	%ax, %ds
	movw	%ax, %es
	movw	%ax, %ss

	/* the PD entries: 2 MiB pages, present, writable, PS */
	movl	$PD, %edi
	movl	$0x83, %eax
	xorl	%edx, %edx		/* bits 32-63 of the address */
	movl	$(MAP_GIB * 512), %ecx
1:	movl	%eax, (%edi)
	movl	%edx, 4(%edi)
	addl	$0x200000, %eax
	adcl	$0, %edx
	addl	$8, %edi
	loop	1b

	/* PDPT[i] -> PD + i * 4 KiB; PML4[0] -> PDPT */
	movl	$PDPT, %edi
	movl	$(PD | 3), %eax
	movl	$MAP_GIB, %ecx
2:	movl	%eax, (%edi)
	movl	$0, 4(%edi)
	addl	$0x1000, %eax
	addl	$8, %edi
	loop	2b
	movl	$(PDPT | 3), PML4
	movl	$0, PML4 + 4

	movl	%cr4, %eax
	orl	$0x20, %eax		/* PAE */
	movl	%eax, %cr4
	movl	$PML4, %eax
	movl	%eax, %cr3
	movl	$0xc0000080, %ecx	/* EFER */
	rdmsr
	orl	$0x100, %eax		/* LME */
	wrmsr
	movl	%cr0, %eax
	orl	$0x80000000, %eax	/* PG */
	movl	%eax, %cr0
	ljmp	$0x18, $lm64

	.code64
lm64:
	movl	$0x7c00, %esp		/* zero-extended: rsp's top half is unset */
	/* r8: end of low RAM = 16 MiB + CMOS[0x35:0x34] * 64 KiB */
	movb	$0x35, %al
	call	cmos
	movzbl	%al, %r8d
	shll	$8, %r8d
	movb	$0x34, %al
	call	cmos
	movb	%al, %r8b
	shlq	$16, %r8
	addq	$(16 << 20), %r8

	/* r9: end of high RAM = 4 GiB + CMOS[0x5d:0x5b] * 64 KiB, clamped */
	movb	$0x5d, %al
	call	cmos
	movzbl	%al, %r9d
	shll	$8, %r9d
	movb	$0x5c, %al
	call	cmos
	movb	%al, %r9b
	shll	$8, %r9d
	movb	$0x5b, %al
	call	cmos
	movb	%al, %r9b
	shlq	$16, %r9
	movq	$(1 << 32), %rax
	addq	%rax, %r9
	movq	$MAP_END, %rax
	cmpq	%rax, %r9
	cmovaq	%rax, %r9

pass:
	movq	$START, %rdi
	movq	%r8, %rsi
	call	walk
	movq	$(1 << 32), %rdi
	movq	%r9, %rsi
	call	walk
	movb	$'B', %al
	movw	$SERIAL, %dx
	outb	%al, %dx
	jmp	pass

/*
 * walk: one to the counter of each page in [rdi, rsi), both 64 KiB-aligned
 * as the CMOS counts; 16 pages a round, for on this machine's KVM every
 * instruction of the loop costs about as much as a page's write.
 */
walk:
	cmpq	%rsi, %rdi
	jae	7f
6:	incl	0x0000(%rdi)
	incl	0x1000(%rdi)
	incl	0x2000(%rdi)
	incl	0x3000(%rdi)
	incl	0x4000(%rdi)
	incl	0x5000(%rdi)
	incl	0x6000(%rdi)
	incl	0x7000(%rdi)
	incl	0x8000(%rdi)
	incl	0x9000(%rdi)
	incl	0xa000(%rdi)
	incl	0xb000(%rdi)
	incl	0xc000(%rdi)
	incl	0xd000(%rdi)
	incl	0xe000(%rdi)
	incl	0xf000(%rdi)
	addq	$0x10000, %rdi
	cmpq	%rsi, %rdi
	jb	6b
7:	ret

/* cmos: al = CMOS register al (NMI stays enabled; interrupts are off) */
cmos:
	outb	%al, $CMOS_IDX
	inb	$CMOS_DAT, %al
	ret

	.p2align 3
gdt:
	.quad	0
	.quad	0x00cf9a000000ffff	/* 0x08: 32-bit code, 4 GiB flat */
	.quad	0x00cf92000000ffff	/* 0x10: data, 4 GiB flat */
	.quad	0x00af9a000000ffff	/* 0x18: 64-bit code */
gdt_desc:
	.word	gdt_desc - gdt - 1
	.long	gdt

	.org	510
	.byte	0x55, 0xaa
