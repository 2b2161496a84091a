// The board layer of the ecg-edge firmware harness: console output, exit status, an instruction
// counter and the memory high-water marks. mps3_an547.c implements it for Arm's MPS3 AN547
// (Cortex-M55) over semihosting, host.c for the host build; a vendor writes one for their board
// (a UART for platform_write, a cycle counter for platform_ticks).
#ifndef ECG_PLATFORM_H_
#define ECG_PLATFORM_H_

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

void platform_init(void);
void platform_write(const char* text);
// A monotonic work counter (0 where the board has none) and how many counted instructions a
// calibration loop of `ECG_CALIBRATION_INSNS` instructions took, for turning counts into instructions.
uint64_t platform_ticks(void);
uint64_t platform_calibration_ticks(void);
uint32_t platform_stack_peak_bytes(void);
uint32_t platform_heap_peak_bytes(void);
__attribute__((noreturn)) void platform_exit(int status);

#define ECG_CALIBRATION_LOOPS 1000000u
#define ECG_CALIBRATION_INSNS (2u * ECG_CALIBRATION_LOOPS)

#ifdef __cplusplus
}
#endif

#endif  // ECG_PLATFORM_H_
