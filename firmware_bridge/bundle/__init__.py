"""Vendor bundles, on the wearable side: `ecg-edge package` writes one, `ecg-edge verify` checks it.

* `format`: the bundle format once (format number, targets, file names, the C array, model_ops.h);
* `package`: an int8 artifact -> a bundle folder (`package`);
* `verify`: the checks a vendor runs before flashing (`verify_bundle`), `--on qemu` included;
* `firmware`: the firmware project of a TFLite Micro bundle, built with the Arm GNU toolchain and
  run on QEMU's Cortex-M55 board (`mps3-an547`) against the same sources built for the host;
* `elf`: flash and static RAM of the linked image; `vela`: the Arm Ethos-U NPU compiler; `signing`:
  Ed25519 keys; `readme`: the bundle's README.

Torch-free (a layering test keeps `train` and `distill` out): a vendor runs it with the `[edge]`
install plus `tflite-micro` / `ethos-u-vela` for the targets that need them.
"""
from firmware_bridge.bundle.format import BUNDLE_FORMAT, TARGETS, parse_c_array, render_c_array
from firmware_bridge.bundle.package import package
from firmware_bridge.bundle.signing import keygen
from firmware_bridge.bundle.verify import BundleError, BundleReport, Check, verify_bundle

__all__ = ["BUNDLE_FORMAT", "TARGETS", "BundleError", "BundleReport", "Check", "keygen", "package", "parse_c_array",
           "render_c_array", "verify_bundle"]
