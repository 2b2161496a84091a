// Board layer for the host build: the same harness, TFLite Micro and CMSIS-NN (its portable C path)
// built for this computer, as the bit-exact reference of the Cortex-M55 run. No work counter and no
// stack painting here: those figures come from the emulated board only.
#include <stdio.h>
#include <stdlib.h>

#include "platform.h"

void platform_init(void) {}
void platform_write(const char* text) { fputs(text, stdout); }
uint64_t platform_ticks(void) { return 0; }
uint64_t platform_calibration_ticks(void) { return 0; }
uint32_t platform_stack_peak_bytes(void) { return 0; }
uint32_t platform_heap_peak_bytes(void) { return 0; }
void platform_exit(int status) {
  fflush(stdout);
  exit(status);
}
