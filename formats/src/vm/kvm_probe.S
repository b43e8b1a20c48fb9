/* Source of the firmware in kvm.rs (assembled with: as --32 -o p.o kvm_probe.S &&
 * ld -m elf_i386 -Ttext=0 --oformat binary -o probe.bin p.o). */
/* KVM probe firmware: real mode -> long mode, prints "OK" on COM1, halts.
 * Loaded as a 64 KiB BIOS image: mapped at 0xF0000 (and below 4 GiB); entry at 0xFFFF0. */
        .code16
        .org 0
start16:
        cli
        xorw %ax, %ax
        movw %ax, %ds
        movw %ax, %es
        /* page tables at 0x1000 (PML4), 0x2000 (PDPT), 0x3000 (PD, one 2 MiB page) */
        movw $0x1000, %di
        movw $0x3000, %cx
        xorl %eax, %eax
        rep stosb
        movl $0x2003, 0x1000
        movl $0x3003, 0x2000
        movl $0x0083, 0x3000
        /* GDT copied to 0x500 */
        movw $0xF000, %ax
        movw %ax, %ds
        movw $gdt, %si
        movw $0x500, %di
        movw $24, %cx
        rep movsb
        xorw %ax, %ax
        movw %ax, %ds
        movw $23, 0x600
        movl $0x500, 0x602
        lgdtl 0x600
        movl %cr4, %eax
        orl $0x20, %eax           /* PAE */
        movl %eax, %cr4
        movl $0x1000, %eax
        movl %eax, %cr3
        movl $0xC0000080, %ecx    /* EFER */
        rdmsr
        orl $0x100, %eax          /* LME */
        wrmsr
        movl %cr0, %eax
        orl $0x80000001, %eax     /* PG | PE */
        movl %eax, %cr0
        ljmpl $0x08, $0xF0000 + long64
gdt:
        .quad 0
        .quad 0x00AF9A000000FFFF  /* 64-bit code */
        .quad 0x00CF92000000FFFF  /* data */
        .code64
long64:
        movw $0x3F8, %dx
        movb $'O', %al
        outb %al, %dx
        movb $'K', %al
        outb %al, %dx
1:      hlt
        jmp 1b
        .org 0xFFF0
        .code16
reset:
        ljmp $0xF000, $start16
        .org 0x10000
