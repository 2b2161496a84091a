"""Bluetooth SIG Heart Rate Service: the Heart Rate Measurement characteristic, no I/O.

Layout (Heart Rate Service 1.0, see docs/FACTS.md): flags byte, then HR (uint8, or uint16 when
flags bit 0 is set), energy expended (uint16 kJ, when bit 3 is set), then RR intervals (uint16 LE
in 1/1024 s, when bit 4 is set) filling the rest of the value. Flags bits 1-2 are sensor contact:
bit 2 set = contact detection supported, then bit 1 = contact detected. Bits 5-7 are reserved
(ignored when read, sent as 0). Example: `10 48 55 03` is HR 72 bpm, one RR of 853/1024 s.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from firmware_bridge.errors import profile_error

HEART_RATE_SERVICE = "0000180d-0000-1000-8000-00805f9b34fb"
HEART_RATE_MEASUREMENT = "00002a37-0000-1000-8000-00805f9b34fb"

FLAG_HR_UINT16 = 0x01
FLAG_CONTACT_DETECTED = 0x02
FLAG_CONTACT_SUPPORTED = 0x04
FLAG_ENERGY = 0x08
FLAG_RR = 0x10
#: RR intervals are counted in 1/1024 s.
RR_UNITS_PER_S = 1024

_HRS = "hrs heart rate measurement"


@dataclass(frozen=True)
class HeartRate:
    """A decoded measurement.

    contact: None when the sensor does not report contact, else whether the skin contact is good.
    energy_kj: cumulative energy expended, when sent.
    rr_s: RR intervals in seconds (exact multiples of 1/1024 s), oldest first.
    """

    bpm: int
    contact: bool | None
    energy_kj: int | None
    rr_s: tuple[float, ...]

    @property
    def rr_1024(self) -> tuple[int, ...]:
        """RR intervals in the wire unit, 1/1024 s (exact: x/1024 is a binary fraction)."""
        return tuple(round(r * RR_UNITS_PER_S) for r in self.rr_s)


def encode_heart_rate(bpm: int, rr_1024: Sequence[int] = (), contact: bool | None = None,
                      energy: int | None = None, uint16: bool = False) -> bytes:
    """Encode a Heart Rate Measurement value (HR as uint8 unless `uint16`)."""
    if not 0 <= int(bpm) <= (0xFFFF if uint16 else 0xFF):
        raise profile_error(_HRS, "bpm", f"0..{0xFFFF if uint16 else 0xFF} (uint16={uint16})", bpm)
    if energy is not None and not 0 <= int(energy) <= 0xFFFF:
        raise profile_error(_HRS, "energy", "0..65535 kJ", energy)
    rr = [int(r) for r in rr_1024]
    if any(not 0 <= r <= 0xFFFF for r in rr):
        raise profile_error(_HRS, "rr_1024", "uint16 values (1/1024 s)", rr)
    flags = FLAG_HR_UINT16 if uint16 else 0
    if contact is not None:
        flags |= FLAG_CONTACT_SUPPORTED | (FLAG_CONTACT_DETECTED if contact else 0)
    out = bytearray([flags])
    out += struct.pack("<H" if uint16 else "<B", int(bpm))
    if energy is not None:
        out[0] |= FLAG_ENERGY
        out += struct.pack("<H", int(energy))
    if rr:
        out[0] |= FLAG_RR
        out += np.asarray(rr, dtype="<u2").tobytes()
    return bytes(out)


def decode_heart_rate(data: bytes) -> HeartRate:
    """Decode a Heart Rate Measurement value; a truncated or odd-length RR field raises ProfileError."""
    buf = bytes(data)
    if not buf:
        raise profile_error(_HRS, "flags", "1 byte", "an empty value")
    flags = buf[0]
    pos = 3 if flags & FLAG_HR_UINT16 else 2
    if len(buf) < pos:
        raise profile_error(_HRS, "heart rate", f"uint{8 * (pos - 1)} after the flags", f"{len(buf)} bytes in all")
    bpm = int.from_bytes(buf[1:pos], "little")
    contact = bool(flags & FLAG_CONTACT_DETECTED) if flags & FLAG_CONTACT_SUPPORTED else None
    energy = None
    if flags & FLAG_ENERGY:
        if len(buf) < pos + 2:
            raise profile_error(_HRS, "energy expended", "uint16 (flags bit 3 set)", f"{len(buf) - pos} bytes")
        energy = int.from_bytes(buf[pos:pos + 2], "little")
        pos += 2
    rest = buf[pos:]
    if not flags & FLAG_RR:
        if rest:
            raise profile_error(_HRS, "length", f"{pos} bytes (no RR intervals flagged)", f"{len(buf)} bytes")
        return HeartRate(bpm, contact, energy, ())
    if len(rest) % 2:
        raise profile_error(_HRS, "rr intervals", "uint16 values (an even byte count)", f"{len(rest)} bytes")
    rr = np.frombuffer(rest, dtype="<u2") / RR_UNITS_PER_S
    return HeartRate(bpm, contact, energy, tuple(float(r) for r in rr))
