"""A virtual BLE ECG wearable on bumble: a Polar H10 (PMD + Heart Rate Service) or a device speaking
the project's open profile, replaying a signal over an in-process `LocalLink`, with fault injection.

    wearable = VirtualWearable(replay_signal("mitdb/100", duration_s=300), 130.0, speed=100)
    async with virtual_link(wearable) as vlink:    # firmware_bridge.bumble_backend
        ...                                        # any bleak code with backend=vlink.client_backend

Device model. The device counts samples from the first START (index 0 = `signal[0]`); a Polar
frame carries 73 samples and the device time of its last sample, `epoch_ns + k * 1e9 / fs_true`
with `fs_true = fs * (1 + drift_ppm * 1e-6)`; frames leave every 73 / fs_true / speed seconds.
The count and clock keep running across disconnects: when the link drops while streaming,
`Faults.outage_s` of signal passes unsent (the next START continues after it, and not before
`outage_s / speed` host seconds have passed, as for a real device), so a receiver sees the outage
as a timestamp gap. The open profile restarts its index at 0 on every START
(`FLAG_STREAM_START`), as its spec says. Heart rate: one HRS notification per second of device
time from `replay.heart_rate_plan` (R peaks of the signal, or the RR intervals given).

`log` records exactly what was sent: per data notification its number, sample range and fate
(`SentFrame.status`), the outages, HR values and control responses.
"""
from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from bumble import hci
from bumble.core import UUID, AdvertisingData
from bumble.device import Connection, Device
from bumble.gatt import Characteristic, CharacteristicValue, Service
from bumble.link import LocalLink

from edge_runtime.errors import ConfigError
from firmware_bridge import hrs, open_profile as op, polar
from firmware_bridge.bumble_backend import bumble_device
from firmware_bridge.replay import heart_rate_plan, r_peaks, replay_signal  # noqa: F401 (re-export)

#: 2024-01-01T00:00:00Z in ns since 2000-01-01 (the PMD epoch): the default device clock start.
DEFAULT_EPOCH_NS = 757_382_400 * 1_000_000_000
POLAR_FRAME_SAMPLES = 73
#: The MTU the virtual central asks for; open-profile packets are sized to fit it by default.
DESIGN_MTU = 247
ATT_OVERHEAD = 3
BODY_SENSOR_LOCATION = "00002a38-0000-1000-8000-00805f9b34fb"
_ALL = Characteristic.Permissions.READABLE | Characteristic.Permissions.WRITEABLE
_P = Characteristic.Properties


@dataclass(frozen=True)
class Faults:
    """Faults to inject. Data notifications are numbered 0, 1, ... over the whole run.

    drop_fraction: share of data notifications silently not sent (seeded by `seed`).
    disconnect_after: drop the link before sending these notification numbers.
    disconnect_at_s: drop the link before the first frame at or after these stream times (s).
    corrupt: notification numbers sent truncated by one byte. compressed: sent with the Polar
    delta-compression flag (open profile: an unknown version byte).
    duplicate: sent twice. reorder: held back and sent just after the next notification.
    flip_time: sent well formed but with one timestamp bit flipped (Polar: bit 48 of the ns
    timestamp, +78 h; open profile: bit 38 of the µs timestamp, +76 h).
    bad_gain, wrong_rate (open profile only): sent with a subnormal gain / twice the stream's rate.
    max_mtu: the largest ATT MTU the device accepts (below a frame's need it refuses START).
    outage_s: signal time that passes unsent whenever the link drops while streaming.
    """

    drop_fraction: float = 0.0
    seed: int = 0
    disconnect_after: tuple[int, ...] = ()
    disconnect_at_s: tuple[float, ...] = ()
    corrupt: tuple[int, ...] = ()
    compressed: tuple[int, ...] = ()
    duplicate: tuple[int, ...] = ()
    reorder: tuple[int, ...] = ()
    flip_time: tuple[int, ...] = ()
    bad_gain: tuple[int, ...] = ()
    wrong_rate: tuple[int, ...] = ()
    max_mtu: int | None = None
    outage_s: float = 2.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.drop_fraction < 1.0:
            raise ConfigError(f"faults.drop_fraction: expected 0 <= x < 1, got {self.drop_fraction!r}")
        if self.max_mtu is not None and not 23 <= self.max_mtu <= 517:
            raise ConfigError(f"faults.max_mtu: expected 23..517, got {self.max_mtu!r}")
        if not self.outage_s >= 0:
            raise ConfigError(f"faults.outage_s: expected >= 0 s, got {self.outage_s!r}")


#: Fault -> status of the notifications it damages (their samples cannot reach a receiver).
FAULT_STATUS = {"corrupt": "corrupt", "compressed": "compressed", "flip_time": "flipped", "bad_gain": "bad_gain",
                "wrong_rate": "wrong_rate"}
#: Statuses of notifications that reached the receiver intact (once, twice, or late).
DELIVERED = ("sent", "duplicated", "reordered")


@dataclass(frozen=True)
class SentFrame:
    """One data notification: samples [first_index, first_index + n) of the signal, and its fate."""

    seq: int
    first_index: int
    n: int
    status: str  # "sent", "duplicated", "reordered" (delivered); "dropped", or damaged: FAULT_STATUS
    sent_at: float = 0.0  # time.monotonic() just before the notification left the device


@dataclass
class WearableLog:
    """Everything the virtual device did, for tests to compare against."""

    frames: list[SentFrame] = field(default_factory=list)
    outages: list[tuple[int, int]] = field(default_factory=list)  # (first_index, n) unsent while offline
    heart_rates: list[tuple[int, tuple[int, ...]]] = field(default_factory=list)  # (bpm, rr_1024)
    responses: list[bytes] = field(default_factory=list)
    connections: int = 0
    disconnects: int = 0

    def delivered(self) -> list[SentFrame]:
        """Notifications that reached the receiver intact, in the order they were sent."""
        return [f for f in self.frames if f.status in DELIVERED]

    def missing_ranges(self) -> list[tuple[int, int]]:
        """(first_index, n) of every run of samples a receiver cannot have, between the first and
        the last delivered frame (dropped, damaged or unsent while offline), merged."""
        delivered = self.delivered()
        if not delivered:
            return []
        lo = min(f.first_index for f in delivered)
        hi = max(f.first_index + f.n for f in delivered)
        runs = sorted([(f.first_index, f.n) for f in self.frames if f.status not in DELIVERED] + self.outages)
        merged: list[list[int]] = []
        for first, n in runs:
            if n <= 0 or first < lo or first >= hi:
                continue
            if merged and merged[-1][0] + merged[-1][1] == first:
                merged[-1][1] += n
            else:
                merged.append([first, n])
        return [(a, b) for a, b in merged]


class VirtualWearable:
    """A bumble peripheral replaying `signal_uv` (1-D integers, µV) at `fs` Hz; see the module doc.

    profile: "polar" (PMD + HRS, fs must be 130) or "open" (open profile + HRS; `open_fmt`
    "int16"/"int24", `open_gain` counts per mV, `samples_per_frame` per packet).
    speed: 1.0 is real time; 100 replays a hundred times faster. rr_s: RR intervals for the HRS
    (default: from the signal's R peaks).
    """

    def __init__(self, signal_uv: np.ndarray, fs: float = polar.HR_ECG_FS, *, name: str = "Polar H10 VIRTUAL",
                 profile: str = "polar", speed: float = 1.0, rr_s: Sequence[float] | None = None,
                 faults: Faults | None = None, address: str = "F0:0D:EC:60:00:01",
                 epoch_ns: int = DEFAULT_EPOCH_NS, drift_ppm: float = 0.0, samples_per_frame: int | None = None,
                 open_fmt: str = "int16", open_gain: float = 1000.0, lead: str = "CHEST") -> None:
        x = np.asarray(signal_uv)
        if x.ndim != 1 or x.size == 0 or not np.issubdtype(x.dtype, np.integer):
            raise ConfigError(f"signal_uv: expected a non-empty 1-D integer array (µV), got {x.dtype} {x.shape}")
        if profile not in ("polar", "open"):
            raise ConfigError(f"profile: expected 'polar' or 'open', got {profile!r}")
        if profile == "polar" and fs != polar.HR_ECG_FS:
            raise ConfigError(f"fs: a Polar H10 streams ECG at {polar.HR_ECG_FS:g} Hz, got {fs!r}")
        if profile == "polar" and faults is not None and (faults.bad_gain or faults.wrong_rate):
            raise ConfigError("faults.bad_gain, faults.wrong_rate: open profile only (PMD frames carry no gain or rate)")
        if not (math.isfinite(speed) and speed > 0):
            raise ConfigError(f"speed: expected a finite number > 0 (1.0 = real time), got {speed!r}")
        self.fs, self.name, self.profile, self.speed = float(fs), name, profile, float(speed)
        self.faults = faults or Faults()
        self.address, self.epoch_ns, self.lead = address, int(epoch_ns), lead
        self.fs_true = self.fs * (1.0 + drift_ppm * 1e-6)
        self.open_fmt, self.open_gain = open_fmt, float(np.float32(open_gain))
        if profile == "polar":
            self.samples_per_frame = samples_per_frame or POLAR_FRAME_SAMPLES
            self.samples = x.astype(np.int64)  # on the wire: µV
        else:
            self.samples_per_frame = samples_per_frame or op.max_samples_per_packet(DESIGN_MTU, open_fmt)
            self.samples = op.quantize_mv(x / 1000.0, self.open_gain, open_fmt).astype(np.int64)  # counts
        beats = np.cumsum(rr_s) if rr_s is not None else r_peaks(x, self.fs) / self.fs
        self.hr_plan = heart_rate_plan(beats, x.size / self.fs)
        self.log = WearableLog()
        self.position = 0  # next signal sample the device measures
        self._rng = np.random.default_rng(self.faults.seed)
        self._seq = 0
        self._disconnect_at = sorted(int(math.ceil(t * self.fs)) for t in self.faults.disconnect_at_s)
        self._pending_disconnects = set(self.faults.disconnect_after)
        self._hr_next = 0
        self._stream_task: asyncio.Task | None = None
        self._hr_task: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()  # fire-and-forget work, referenced until done
        self._stream_seq = self._stream_index = 0
        self._resume_at = 0.0  # loop time before which a restarted stream may not send (the outage)
        self.device: Device | None = None
        self.finished: asyncio.Event | None = None

    # --- GATT database and advertising -------------------------------------------------------------

    def _services(self) -> list[Service]:
        self._hr_char = Characteristic(hrs.HEART_RATE_MEASUREMENT, _P.NOTIFY, _ALL, b"")
        heart = Service(hrs.HEART_RATE_SERVICE, [
            self._hr_char, Characteristic(BODY_SENSOR_LOCATION, _P.READ, _ALL, b"\x01")])  # 1 = chest
        control = CharacteristicValue(read=self._read_control, write=self._write_control)
        self._data_char = Characteristic(polar.PMD_DATA if self.profile == "polar" else op.OPEN_DATA,
                                         _P.NOTIFY, _ALL, b"")
        if self.profile == "polar":
            self._control_char = Characteristic(polar.PMD_CONTROL, _P.READ | _P.WRITE | _P.INDICATE, _ALL, control)
            return [Service(polar.PMD_SERVICE, [self._control_char, self._data_char]), heart]
        self._control_char = Characteristic(op.OPEN_CONTROL, _P.WRITE | _P.INDICATE, _ALL, control)
        info = Characteristic(op.OPEN_INFO, _P.READ, _ALL, self.open_config_bytes())
        return [Service(op.OPEN_SERVICE, [self._data_char, self._control_char, info]), heart]

    def open_config_bytes(self) -> bytes:
        return op.encode_config(op.OpenConfig(int(self.fs), self.open_fmt, self.open_gain, self.lead,
                                              self.samples_per_frame, "virtual-1.0"))

    def advertising_data(self) -> bytes:
        """Flags, name, HRS 16-bit UUID and the profile's 128-bit service UUID.

        (More than the 31 bytes of a legacy advertisement with a long name; bumble's virtual
        controller accepts it and answers scan requests with this same data.)
        """
        service = polar.PMD_SERVICE if self.profile == "polar" else op.OPEN_SERVICE
        return bytes(AdvertisingData([
            (AdvertisingData.FLAGS, bytes([0x06])),
            (AdvertisingData.COMPLETE_LOCAL_NAME, self.name.encode("utf-8")),
            (AdvertisingData.COMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS, UUID(hrs.HEART_RATE_SERVICE).to_bytes()),
            (AdvertisingData.COMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS, UUID(service).to_bytes()),
        ]))

    async def attach(self, link: LocalLink) -> None:
        """Create the bumble device on `link`, power it on and advertise (restarting after each drop)."""
        self.finished = asyncio.Event()
        self.device = device = bumble_device(link, self.name, self.address)
        if self.faults.max_mtu is not None:
            device.gatt_server.max_mtu = self.faults.max_mtu
        device.add_services(self._services())
        device.on(Device.EVENT_CONNECTION, self._on_connection)
        await device.power_on()
        await device.start_advertising(advertising_data=self.advertising_data(), auto_restart=True,
                                       advertising_interval_min=20, advertising_interval_max=20)

    async def close(self) -> None:
        """Stop streaming and advertising, drop the link, power off (idempotent)."""
        for task in (self._stream_task, self._hr_task, *self._tasks):
            if task is not None:
                task.cancel()
        if self.device is not None and self.device.powered_on:
            await self.device.stop_advertising()
            for connection in list(self.device.connections.values()):
                try:
                    await connection.disconnect(hci.HCI_REMOTE_USER_TERMINATED_CONNECTION_ERROR)
                except Exception:
                    pass
            await self.device.power_off()

    # --- connection life cycle ---------------------------------------------------------------------

    def _on_connection(self, connection: Connection) -> None:
        self.log.connections += 1
        connection.on(Connection.EVENT_DISCONNECTION, lambda reason: self._on_disconnection())
        self._hr_task = asyncio.get_running_loop().create_task(self._heart_rate(connection))

    def _on_disconnection(self) -> None:
        self.log.disconnects += 1
        if self._hr_task is not None:
            self._hr_task.cancel()
        if self._stream_task is not None and not self._stream_task.done():
            self._stream_task.cancel()
            n = min(int(round(self.faults.outage_s * self.fs)), self.samples.size - self.position)
            if n > 0:
                self.log.outages.append((self.position, n))
                self.position += n
                self._resume_at = asyncio.get_running_loop().time() + n / (self.fs_true * self.speed)
        self._stream_task = None

    def _spawn(self, coro: Any) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _streaming(self) -> bool:
        return self._stream_task is not None and not self._stream_task.done()

    def _subscribed(self, connection: Connection, char: Characteristic) -> bool:
        assert self.device is not None
        return self.device.gatt_server.read_cccd(connection, char) != b"\x00\x00"

    async def _heart_rate(self, connection: Connection) -> None:
        while self._hr_next < len(self.hr_plan):
            await asyncio.sleep(1.0 / self.speed)
            if not self._subscribed(connection, self._hr_char):
                continue
            bpm, rr = self.hr_plan[self._hr_next]
            self._hr_next += 1
            self.log.heart_rates.append((bpm, rr))
            await self.device.notify_subscriber(connection, self._hr_char, hrs.encode_heart_rate(bpm, rr, contact=True))

    # --- control point -----------------------------------------------------------------------------

    def _read_control(self, connection: Connection) -> bytes:
        return polar.encode_features(["ECG"])

    def _write_control(self, connection: Connection, value: bytes) -> None:
        """Answer by indication (after the write response), as the device firmware does."""
        handler = self._polar_command if self.profile == "polar" else self._open_command
        response, start = handler(connection, bytes(value))
        self._spawn(self._respond(connection, response, start))

    def _frame_bytes(self) -> int:
        if self.profile == "polar":
            return 10 + 3 * self.samples_per_frame
        return op.HEADER_SIZE + op.FORMATS[self.open_fmt] * self.samples_per_frame

    def _polar_command(self, connection: Connection, value: bytes) -> tuple[bytes, bool]:
        try:
            req = polar.decode_control_request(value)
        except polar.PmdRequestError as exc:
            return polar.encode_control_response(value[0] if value else 0, value[1] if len(value) > 1 else 0,
                                                 exc.code), False
        err, params = polar.PmdError.SUCCESS, b""
        if req.measurement_type != polar.ECG:
            err = polar.PmdError.NOT_SUPPORTED
        elif req.op == polar.OP_GET_SETTINGS:
            params = polar.encode_settings({"sample_rate": 130, "resolution": 14})
        elif req.op == polar.OP_STOP:
            err = polar.PmdError.SUCCESS if self._streaming() else polar.PmdError.ALREADY_IN_STATE
            self._stop_stream()
        elif self._streaming():
            err = polar.PmdError.ALREADY_IN_STATE
        elif req.settings.get("sample_rate", 130) != 130:
            err = polar.PmdError.INVALID_SAMPLE_RATE
        elif req.settings.get("resolution", 14) != 14:
            err = polar.PmdError.INVALID_RESOLUTION
        elif connection.att_mtu - ATT_OVERHEAD < self._frame_bytes():
            err = polar.PmdError.INVALID_MTU
        start = req.op == polar.OP_START and err == polar.PmdError.SUCCESS
        return polar.encode_control_response(req.op, req.measurement_type, err, params=params), start

    def _open_command(self, connection: Connection, value: bytes) -> tuple[bytes, bool]:
        try:
            cmd = op.decode_command(value)
        except op.OpenCommandError as exc:
            return op.encode_control_response(value[0] if value else 0, exc.code), False
        result = op.OpenResult.SUCCESS
        if cmd.op == op.OP_CONFIGURE:
            result = op.OpenResult.NOT_SUPPORTED  # the replayed signal has one rate and format
        elif cmd.op == op.OP_STOP:
            result = op.OpenResult.SUCCESS if self._streaming() else op.OpenResult.ALREADY_IN_STATE
            self._stop_stream()
        elif self._streaming():
            result = op.OpenResult.ALREADY_IN_STATE
        elif connection.att_mtu - ATT_OVERHEAD < self._frame_bytes():
            result = op.OpenResult.MTU_TOO_SMALL
        return op.encode_control_response(cmd.op, result), cmd.op == op.OP_START and result == op.OpenResult.SUCCESS

    async def _respond(self, connection: Connection, response: bytes, start: bool) -> None:
        self.log.responses.append(response)
        await self.device.indicate_subscriber(connection, self._control_char, response)
        if start:
            self._stream_seq = self._stream_index = 0
            self._stream_task = asyncio.get_running_loop().create_task(self._stream(connection))

    def _stop_stream(self) -> None:
        if self._stream_task is not None:
            self._stream_task.cancel()
            self._stream_task = None

    # --- data --------------------------------------------------------------------------------------

    def _fate(self, seq: int) -> str:
        dropped = self._rng.random() < self.faults.drop_fraction  # drawn for every frame: reproducible
        for fault, status in FAULT_STATUS.items():
            if seq in getattr(self.faults, fault):
                return status
        if dropped:
            return "dropped"
        return "duplicated" if seq in self.faults.duplicate else "reordered" if seq in self.faults.reorder else "sent"

    def _payload(self, pos: int, n: int, status: str) -> bytes:
        chunk = self.samples[pos:pos + n]
        if self.profile == "polar":
            ts = self.epoch_ns + round((pos + n - 1) * 1e9 / self.fs_true)
            data = bytearray(polar.encode_ecg_frame(ts ^ (1 << 48) if status == "flipped" else ts, chunk))
            if status == "compressed":
                data[9] |= 0x80
        else:
            ts_us = round(pos * 1e6 / self.fs_true)  # device clock since boot
            flags = op.FLAG_STREAM_START if self._stream_seq == 0 else 0
            data = bytearray(op.encode_packet(chunk, seq=self._stream_seq, first_sample_index=self._stream_index,
                                              timestamp_us=ts_us ^ (1 << 38) if status == "flipped" else ts_us,
                                              fs_hz=int(self.fs) * (2 if status == "wrong_rate" else 1),
                                              gain=self.open_gain, fmt=self.open_fmt, lead=self.lead, flags=flags))
            if status == "compressed":
                data[0] = op.PROFILE_VERSION + 1
            if status == "bad_gain":
                data[16:20] = np.float32(1e-45).tobytes()  # subnormal: 1 count would read as 7e44 mV
        return bytes(data[:-1] if status == "corrupt" else data)

    def _disconnect_due(self, seq: int) -> bool:
        if seq in self._pending_disconnects:
            self._pending_disconnects.discard(seq)
            return True
        if self._disconnect_at and self.position >= self._disconnect_at[0]:
            self._disconnect_at.pop(0)
            return True
        return False

    async def _stream(self, connection: Connection) -> None:
        """Send frames on the device's schedule until the signal ends or the link drops."""
        loop = asyncio.get_running_loop()
        await asyncio.sleep(max(0.0, self._resume_at - loop.time()))  # the outage lasts its time
        t0, pos0 = loop.time(), self.position
        held: tuple[int, bytes] | None = None  # a notification to reorder: (log position, payload)
        while self.position < self.samples.size:
            if self._disconnect_due(self._seq):
                self._spawn(connection.disconnect(hci.HCI_REMOTE_USER_TERMINATED_CONNECTION_ERROR))
                await asyncio.Event().wait()  # cancelled by the disconnection
            pos, n, seq = self.position, min(self.samples_per_frame, self.samples.size - self.position), self._seq
            status = self._fate(seq)
            sent_at = time.monotonic()
            if status == "reordered" and held is None:
                held = (len(self.log.frames), self._payload(pos, n, status))
                status = "dropped"  # until it is sent, after the next one
            elif status != "dropped":
                payload = self._payload(pos, n, status)
                for _ in range(2 if status == "duplicated" else 1):
                    await self.device.notify_subscriber(connection, self._data_char, payload)
            self.log.frames.append(SentFrame(seq, pos, n, status, sent_at))
            if held is not None and held[0] < len(self.log.frames) - 1:
                await self._send_held(connection, held)
                held = None
            self._seq, self.position = seq + 1, pos + n
            self._stream_seq, self._stream_index = self._stream_seq + 1, self._stream_index + n
            await asyncio.sleep(max(0.0, t0 + (self.position - pos0) / (self.fs_true * self.speed) - loop.time()))
        if held is not None:
            await self._send_held(connection, held)
        self.finished.set()

    async def _send_held(self, connection: Connection, held: tuple[int, bytes]) -> None:
        k, payload = held
        f = self.log.frames[k]
        self.log.frames[k] = SentFrame(f.seq, f.first_index, f.n, "reordered", time.monotonic())
        await self.device.notify_subscriber(connection, self._data_char, payload)
