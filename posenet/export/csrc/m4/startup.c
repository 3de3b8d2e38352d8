/*
 * Minimal Cortex-M4 start-up for QEMU's mps2-an386: vector table, .data copy, .bss clear, FPU on, main,
 * then exit() (newlib's semihosting: the exit status ends QEMU). Used only for instruction counts.
 */
#include <stdint.h>
#include <stdlib.h>

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _estack;
int main(void);

void Reset_Handler(void);
void Default_Handler(void);

/* newlib's exit() runs the fini array; nothing here needs constructors or destructors. */
void _init(void);
void _fini(void);
void _init(void)
{
}
void _fini(void)
{
}

void Default_Handler(void)
{
    exit(3); /* a fault: end QEMU with a failure rather than hang */
}

void Reset_Handler(void)
{
    uint32_t *src = &_sidata, *dst = &_sdata;
    while (dst < &_edata) {
        *dst++ = *src++;
    }
    for (dst = &_sbss; dst < &_ebss;) {
        *dst++ = 0;
    }
    *(volatile uint32_t *)0xE000ED88 |= 0xFu << 20; /* CPACR: CP10 and CP11 full access (the FPU) */
    __asm volatile("dsb\n\tisb" ::: "memory");
    exit(main());
}

__attribute__((section(".isr_vector"), used)) static void (*const vectors[16])(void) = {
    (void (*)(void))(uintptr_t)&_estack, Reset_Handler, Default_Handler, Default_Handler, Default_Handler,
    Default_Handler, Default_Handler, 0, 0, 0, 0, Default_Handler, Default_Handler, 0, Default_Handler,
    Default_Handler,
};
