// ecg-edge firmware harness: runs every golden int8 window of the bundle's model on TensorFlow Lite
// Micro and writes, one line each, the output bytes of every window, a CRC-32 over all outputs, the
// arena and stack used; the exit status is 0 only when every step succeeded.
//
// Lines (all start with "ecg "): model_crc32, arena_used, calibration, out <i> <ticks> <hex>,
// outputs_crc32, stack_peak, heap_peak, status; "ecg error <what>" before a non-zero status.
// Status: 0 ok, 2 model checksum mismatch, 3 schema version, 4 operator registration,
// 5 AllocateTensors (arena too small), 6 tensor type or size, 7 Invoke, 8 fault (mps3_an547.c).
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "golden_data.h"
#include "model_data.h"
#include "model_ops.h"
#include "platform.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/schema/schema_generated.h"

#ifndef ECG_ARENA_BYTES
#error "ECG_ARENA_BYTES: the tensor arena in bytes (the Makefile passes the bundle's figure)"
#endif

namespace {

alignas(16) uint8_t tensor_arena[ECG_ARENA_BYTES];
char line[96 + 2 * ECG_GOLDEN_OUTPUT_BYTES];

// CRC-32 (IEEE 802.3, reflected, as zlib.crc32), bitwise: no table in flash.
uint32_t crc32_update(uint32_t crc, const uint8_t* p, uint32_t n) {
  crc = ~crc;
  for (uint32_t i = 0; i < n; ++i) {
    crc ^= p[i];
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
  }
  return ~crc;
}

// newlib-nano's printf has no %llu: 64-bit counts are written by hand.
const char* u64(uint64_t v, char (&buf)[24]) {
  char* p = buf + sizeof(buf) - 1;
  *p = 0;
  do {
    *--p = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v);
  return p;
}

void emit(const char* text) {
  platform_write(text);
  platform_write("\n");
}

[[noreturn]] void fail(int status, const char* what) {
  snprintf(line, sizeof(line), "ecg error %s", what);
  emit(line);
  snprintf(line, sizeof(line), "ecg status %d", status);
  emit(line);
  platform_exit(status);
}

}  // namespace

int main() {
  platform_init();
  const uint32_t model_crc = crc32_update(0, ECG_MODEL_ARRAY, ECG_MODEL_LEN);
  snprintf(line, sizeof(line), "ecg model_crc32 %08lx %u", static_cast<unsigned long>(model_crc),
           static_cast<unsigned>(ECG_MODEL_LEN));
  emit(line);
  if (model_crc != ECG_MODEL_CRC32 || ECG_MODEL_LEN != ECG_MODEL_BYTES) fail(2, "model checksum mismatch");
  const tflite::Model* model = tflite::GetModel(ECG_MODEL_ARRAY);
  if (model->version() != TFLITE_SCHEMA_VERSION) fail(3, "model schema version");
  tflite::MicroMutableOpResolver<kEcgModelOpCount> resolver;
  if (RegisterEcgModelOps(resolver) != kTfLiteOk) fail(4, "operator registration");
  tflite::MicroInterpreter interpreter(model, resolver, tensor_arena, sizeof(tensor_arena));
  if (interpreter.AllocateTensors() != kTfLiteOk) fail(5, "AllocateTensors failed: tensor arena too small");
  TfLiteTensor* input = interpreter.input(0);
  TfLiteTensor* output = interpreter.output(0);
  if (input->type != kTfLiteInt8 || input->bytes != ECG_GOLDEN_INPUT_BYTES || output->type != kTfLiteInt8 ||
      output->bytes != ECG_GOLDEN_OUTPUT_BYTES)
    fail(6, "model input/output is not the int8 tensor golden_data.h describes");
  snprintf(line, sizeof(line), "ecg arena_used %u %u", static_cast<unsigned>(interpreter.arena_used_bytes()),
           static_cast<unsigned>(sizeof(tensor_arena)));
  emit(line);
  char num[24];
  snprintf(line, sizeof(line), "ecg calibration %s %u", u64(platform_calibration_ticks(), num), ECG_CALIBRATION_INSNS);
  emit(line);
  uint32_t crc = 0;
  for (uint32_t w = 0; w < ECG_GOLDEN_WINDOWS; ++w) {
    memcpy(input->data.int8, ecg_golden_inputs[w], ECG_GOLDEN_INPUT_BYTES);
    const uint64_t t0 = platform_ticks();
    if (interpreter.Invoke() != kTfLiteOk) fail(7, "Invoke failed");
    const uint64_t ticks = platform_ticks() - t0;
    const uint8_t* out = reinterpret_cast<const uint8_t*>(output->data.int8);
    int n = snprintf(line, sizeof(line), "ecg out %lu %s ", static_cast<unsigned long>(w), u64(ticks, num));
    for (uint32_t i = 0; i < ECG_GOLDEN_OUTPUT_BYTES; ++i) n += snprintf(line + n, sizeof(line) - n, "%02x", out[i]);
    emit(line);
    crc = crc32_update(crc, out, ECG_GOLDEN_OUTPUT_BYTES);
  }
  snprintf(line, sizeof(line), "ecg outputs_crc32 %08lx", static_cast<unsigned long>(crc));
  emit(line);
  snprintf(line, sizeof(line), "ecg stack_peak %lu", static_cast<unsigned long>(platform_stack_peak_bytes()));
  emit(line);
  snprintf(line, sizeof(line), "ecg heap_peak %lu", static_cast<unsigned long>(platform_heap_peak_bytes()));
  emit(line);
  emit("ecg status 0");
  platform_exit(0);
}
