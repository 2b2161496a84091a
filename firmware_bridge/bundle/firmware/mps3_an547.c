// Board layer for Arm's MPS3 AN547 (Cortex-M55), as QEMU's `mps3-an547` emulates it: vector table,
// reset (FPU + MVE on, .data copied, .bss zeroed, stack painted and limited by MSPLIM), fault
// handlers that report and exit, SysTick as the work counter, semihosting for output and exit
// status, and a bounded _sbrk that records the heap used. Memory map: mps3_an547.ld.
#include <stddef.h>
#include <stdint.h>

#include "platform.h"
#include "tensorflow/lite/micro/cortex_m_generic/debug_log_callback.h"

extern uint32_t __etext, __data_start__, __data_end__, __bss_start__, __bss_end__;
extern uint32_t __StackLimit, __StackTop, __HeapBase, __HeapLimit;
extern int main(void);
extern void __libc_init_array(void);

#define STACK_PAINT 0xC5C5C5C5u
#define SCB_CPACR (*(volatile uint32_t*)0xE000ED88u)
#define SCB_SHCSR (*(volatile uint32_t*)0xE000ED24u)
#define SCB_CFSR (*(volatile uint32_t*)0xE000ED28u)
#define CFSR_STKOF (1u << 20)
#define SYST_CSR (*(volatile uint32_t*)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t*)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t*)0xE000E018u)
#define SYST_MAX 0x00FFFFFFu

#define SYS_WRITE0 0x04
#define SYS_EXIT_EXTENDED 0x20
#define ADP_STOPPED_APPLICATION_EXIT 0x20026

static volatile uint32_t systick_wraps;
static uint64_t calibration_ticks;
static uint8_t* heap_end;

static int semihost(int op, const void* arg) {
  register int r0 __asm__("r0") = op;
  register const void* r1 __asm__("r1") = arg;
  __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
  return r0;
}

void platform_write(const char* text) { semihost(SYS_WRITE0, text); }

void platform_exit(int status) {
  const uint32_t block[2] = {ADP_STOPPED_APPLICATION_EXIT, (uint32_t)status};
  semihost(SYS_EXIT_EXTENDED, block);
  for (;;) __asm__ volatile("wfi");
}

void SysTick_Handler(void) { systick_wraps = systick_wraps + 1; }

uint64_t platform_ticks(void) {
  uint32_t before, value, after;
  do {  // a wrap between the two reads of the wrap count is taken at once: read again
    before = systick_wraps;
    value = SYST_CVR;
    after = systick_wraps;
  } while (before != after);
  return (uint64_t)before * (SYST_MAX + 1u) + (SYST_MAX - value);
}

uint64_t platform_calibration_ticks(void) { return calibration_ticks; }

static void calibrate(void) {  // ECG_CALIBRATION_LOOPS iterations of two instructions
  uint32_t n = ECG_CALIBRATION_LOOPS;
  const uint64_t t0 = platform_ticks();
  __asm__ volatile("1: subs %0, %0, #1\n\tbne 1b" : "+r"(n) : : "cc");
  calibration_ticks = platform_ticks() - t0;
}

uint32_t platform_stack_peak_bytes(void) {
  const uint32_t* p = &__StackLimit;
  while (p < &__StackTop && *p == STACK_PAINT) ++p;
  return (uint32_t)((uintptr_t)&__StackTop - (uintptr_t)p);
}

uint32_t platform_heap_peak_bytes(void) {
  return heap_end ? (uint32_t)(heap_end - (uint8_t*)&__HeapBase) : 0u;
}

void* _sbrk(ptrdiff_t increment) {  // newlib's malloc, bounded by the .heap region
  if (heap_end == NULL) heap_end = (uint8_t*)&__HeapBase;
  if (heap_end + increment > (uint8_t*)&__HeapLimit || heap_end + increment < (uint8_t*)&__HeapBase) {
    platform_write("ecg error heap exhausted (_sbrk)\n");
    return (void*)-1;
  }
  uint8_t* old = heap_end;
  heap_end += increment;
  return old;
}

void _init(void) {}  // newlib's __libc_init_array calls them; no crti.o with -nostartfiles
void _fini(void) {}

static void log_callback(const char* text) { platform_write(text); }

void platform_init(void) {
  RegisterDebugLogCallback(log_callback);
  SYST_RVR = SYST_MAX;
  SYST_CVR = 0;
  SYST_CSR = 7u;  // processor clock, interrupt on wrap, enabled
  while (SYST_CVR == 0u) {
  }  // the write above cleared the counter: start from its first reload
  calibrate();
}

static void fault(const char* what) {
  platform_write("ecg error ");
  platform_write(what);
  platform_write("\necg status 8\n");
  platform_exit(8);
}

void HardFault_Handler(void) { fault("HardFault"); }
void MemManage_Handler(void) { fault("MemManage fault"); }
void BusFault_Handler(void) { fault("BusFault"); }
void UsageFault_Handler(void) {
  fault((SCB_CFSR & CFSR_STKOF) ? "UsageFault: stack overflow (MSPLIM): raise STACK_BYTES"
                                : "UsageFault (undefined instruction, unaligned or divide by zero)");
}
void Default_Handler(void) { fault("unexpected interrupt"); }

__attribute__((noinline)) static void init_memory(void) {
  uint32_t* src = &__etext;
  for (uint32_t* dst = &__data_start__; dst < &__data_end__;) *dst++ = *src++;
  for (uint32_t* dst = &__bss_start__; dst < &__bss_end__;) *dst++ = 0;
  uint32_t* sp;
  __asm__ volatile("mov %0, sp" : "=r"(sp));
  for (uint32_t* p = &__StackLimit; p < sp - 16; ++p) *p = STACK_PAINT;
  __asm__ volatile("msr msplim, %0" : : "r"(&__StackLimit));
}

__attribute__((noreturn)) void Reset_Handler(void) {
  SCB_CPACR |= 0xFu << 20;  // CP10, CP11: full access to the FPU and MVE (Helium)
  SCB_SHCSR |= 7u << 16;    // MemManage, BusFault and UsageFault their own handlers, not HardFault
  __asm__ volatile("dsb\n\tisb" : : : "memory");
  init_memory();
  __libc_init_array();
  platform_exit(main());
}

__attribute__((section(".vectors"), used)) static void (*const vector_table[16])(void) = {
    (void (*)(void))(&__StackTop), Reset_Handler, Default_Handler, HardFault_Handler, MemManage_Handler,
    BusFault_Handler, UsageFault_Handler, Default_Handler, 0, 0, 0, Default_Handler, Default_Handler, 0,
    Default_Handler, SysTick_Handler,
};
