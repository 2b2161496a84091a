"""Student side of ecg-edge: distillation, int8 quantization and export (built on `train`)."""
