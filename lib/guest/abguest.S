/* SPDX-License-Identifier: MIT */
/*
 * abguest: the kvm workload's guest, and the guest QEMU boots in make
 * bench: one 512-byte boot sector, the same bytes in both. It enters long
 * mode and then, forever, adds one to a 32-bit counter at the start of
 * every 4 KiB page of its share of RAM from 1 MiB up, writing its pass
 * character to the serial port after each pass: as QEMU's migration-test
 * guest does, and as mig-guest's ab workload does on threads.
 *
 * Where RAM is: the CMOS, as QEMU's pc machine leaves it for the BIOS
 * (0x34/0x35: 64 KiB blocks between 16 MiB and the end of low RAM; 0x5b-
 * 0x5d: 64 KiB blocks above 4 GiB); mig-guest emulates the same registers.
 * RAM above low RAM starts at 4 GiB, so the page at index p of RAM is at
 * p * 4K below the end of low RAM and 4 GiB - low end higher above it.
 * Long mode identity-maps MAP_GIB GiB with 2 MiB pages: RAM beyond is not
 * walked (mig-guest refuses such sizes).
 *
 * Which share: `inl` from INFO_PORT gives the complement of this vCPU's
 * index (bits 0-15) and of the number of vCPUs less one (16-31). Nobody
 * answers that port in QEMU, whose unassigned ports read all ones: one
 * vCPU, index 0. The walked pages
 * [256, pages) are cut into 16-page blocks, and vCPU i walks blocks
 * [B*i/n, B*(i+1)/n) of the B blocks (kvm.c computes the same). Before its
 * first page it writes INFO_PORT: from then on its registers say where it
 * is (rdi, and rip within the walk), which mig-guest reads as the cursor.
 *
 * Pass characters: vCPU 0 writes 'B' (QEMU's test guest's), vCPU i the
 * character 'B' + i in ASCII: up to 'a' for vCPU 31, the last there is.
 *
 * The walk sits at a fixed place (WALK_OFF, kvm.c's ABG_WALK): 16 increments
 * of 6 bytes each ({disp32}), then the add that moves to the next block,
 * and the out that ends a pass. Those offsets are how mig-guest turns rip
 * into a page, and the unit tests check the bytes there.
 *
 * Built with binutils alone (the Makefile):
 *   as --64 -o abguest.o abguest.S
 *   ld -m elf_x86_64 -Ttext=0x7c00 -e start -o abguest.elf abguest.o
 *   objcopy -O binary -j .text abguest.elf abguest.img
 */

	.equ	SERIAL, 0x3f8
	.equ	INFO_PORT, 0xff0
	.equ	CMOS_IDX, 0x70
	.equ	CMOS_DAT, 0x71
	.equ	PML4, 0x1000	/* one page */
	.equ	PDPT, 0x2000	/* one page */
	.equ	PD, 0x10000	/* MAP_GIB pages, one per GiB: up to 0x52000 */
	.equ	MAP_GIB, 66
	.equ	START_PAGE, 256	/* 1 MiB */

/* reg: a block number -> its guest-physical address (r8: end of low RAM).
 * A macro, not a call: the vCPUs share the one stack there is. */
	.macro	block_gpa reg
	addq	$(START_PAGE >> 4), \reg
	shlq	$16, \reg
	cmpq	%r8, \reg
	jb	1f
	addq	%r10, \reg
	subq	%r8, \reg
1:
	.endm

/* al = CMOS register r (NMI stays enabled; interrupts are off) */
	.macro	cmos r
	movb	$\r, %al
	outb	%al, $CMOS_IDX
	inb	$CMOS_DAT, %al
	.endm

	.text
	.code16
	.globl start
start:
	jmp	boot

/* rdi: this block; rsi: the slice's end; r8: end of low RAM; r10: 4 GiB;
 * r11: the slice's start; al: the pass character; dx: SERIAL */
	.code64
	.org	0x08
walk:
	{disp32} incl 0x0000(%rdi)
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
	cmpq	%r8, %rdi
	cmoveq	%r10, %rdi		/* over the hole below 4 GiB */
	cmpq	%rsi, %rdi
	jne	walk
	movq	%r11, %rdi
	outb	%al, %dx		/* a pass is done */
	jmp	walk

	.code16
boot:
	cli
	xorw	%ax, %ax
	movw	%ax, %ds
	movw	%ax, %es

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

	/* the PD entries: 2 MiB pages, present, writable, PS. Every vCPU
	 * writes the same values, so they may do it at once; what is not
	 * written here (the top halves of the PML4 and PDPT entries) is
	 * zero, as all RAM is at boot. */
	movl	$PD, %edi
	movl	$0x83, %eax
	xorl	%edx, %edx		/* bits 32-63 of the address */
	movl	$(MAP_GIB * 512), %ecx
1:	stosl
	xchgl	%eax, %edx
	stosl
	xchgl	%eax, %edx
	addl	$0x200000, %eax
	adcl	$0, %edx
	loop	1b

	/* PDPT[i] -> PD + i * 4 KiB; PML4[0] -> PDPT */
	movl	$PDPT, %edi
	movl	$(PD | 3), %eax
	movb	$MAP_GIB, %cl
2:	stosl
	scasl				/* over the top half */
	addl	$0x1000, %eax
	loop	2b
	movl	$(PDPT | 3), PML4

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
	/* r8: end of low RAM = 16 MiB + CMOS[0x35:0x34] * 64 KiB */
	cmos	0x35
	movb	%al, %ah
	cmos	0x34
	movzwl	%ax, %r8d
	addl	$0x100, %r8d
	shlq	$16, %r8

	/* rcx: pages above 4 GiB = CMOS[0x5d:0x5b] * 16 */
	xorl	%ecx, %ecx
	movb	$0x5d, %bl
3:	movb	%bl, %al
	outb	%al, $CMOS_IDX
	inb	$CMOS_DAT, %al
	shll	$8, %ecx
	movb	%al, %cl
	decb	%bl
	cmpb	$0x5a, %bl
	jne	3b
	shll	$4, %ecx

	/* rbx: blocks walked = (low pages - START_PAGE + high pages) / 16 */
	movq	%r8, %rbx
	shrq	$12, %rbx
	addq	%rcx, %rbx
	subl	$START_PAGE, %ebx
	shrq	$4, %rbx

	/* esi: index, ebp: vCPUs; the port answers their complement, so
	 * that all ones (nobody there) reads as vCPU 0 of 1 */
	movw	$INFO_PORT, %dx
	inl	%dx, %eax
	notl	%eax
	movzwl	%ax, %esi
	shrl	$16, %eax
	incl	%eax
	movl	%eax, %ebp

	/* r11 = block B * i / n, r9 = block B * (i + 1) / n, as addresses */
	movl	$1, %r10d
	shlq	$32, %r10
	movq	%rbx, %rax
	mulq	%rsi
	divq	%rbp
	movq	%rax, %r11
	leal	1(%rsi), %eax
	mulq	%rbx
	divq	%rbp
	movq	%rax, %r9
	block_gpa %r11
	block_gpa %r9

	leal	'B'(%rsi), %eax		/* the pass character */
	movq	%r11, %rdi
	movq	%r9, %rsi
	movw	$INFO_PORT, %dx
	outb	%al, %dx		/* walking from now on */
	movw	$SERIAL, %dx
	jmp	walk

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
