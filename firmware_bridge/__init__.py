"""Wearable side of ecg-edge: BLE wearables via bleak, and vendor packaging (depends on `edge_runtime` only).

The facade, as bleak's is: `open_wearable(target, WearableOptions(...))` connects to a real device by
name or address through bleak, or starts a virtual one on bumble for a `virtual:PATH` target, and
yields a source of Chunks; `scan(timeout)` lists nearby devices and the ECG profile each speaks.
bleak and bumble are imported only when a wearable is opened or a scan runs.
"""
from firmware_bridge.client import EcgClient, ScanResult, scan
from firmware_bridge.wearable import VIRTUAL, Wearable, WearableOptions, open_wearable

__all__ = ["EcgClient", "ScanResult", "VIRTUAL", "Wearable", "WearableOptions", "open_wearable", "scan"]
