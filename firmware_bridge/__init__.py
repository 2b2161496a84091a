"""Wearable side of ecg-edge: BLE wearables via bleak, and vendor packaging (depends on `edge_runtime` only)."""
