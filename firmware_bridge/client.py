"""Live ECG from a BLE wearable as `edge_runtime.sources.Chunk`s, through bleak's public API.

    async with EcgClient("Polar H10 1A2B3C4D") as ecg:      # or profile="open", or an address
        async for chunk in ecg:                               # samples (1, n) in mV
            ...
        print(ecg.stats)                                      # every sample accounted for

Flow per connection: scan (by name, address, or the profile's service UUID), connect with a
timeout, check the ATT MTU carries a whole frame, subscribe to the control point's indications and
the data notifications (and Heart Rate Measurement when present) BEFORE writing START, verify the
control response, then decode frames off the notification callback through an `asyncio.Queue`.
Indices come from the device (Polar timestamps, open-profile sample indices), never from the host
clock; after a drop the client reconnects with exponential backoff and restarts the stream, and
the samples missed meanwhile show up as a gap in `stats` (the H10's clock keeps running).

Raspberry Pi setup (Raspberry Pi OS / Debian, BlueZ >= 5.55; the Pi 3B+/4/5 radio works):

- `sudo apt install bluez` (bluetoothd must run: `systemctl status bluetooth`); `pip install
  'ecg-edge[edge]'` (bleak talks to BlueZ over D-Bus: no root needed, but the user must be allowed
  on the system bus, e.g. in the `bluetooth` group: `sudo usermod -aG bluetooth $USER`, re-login).
- `rfkill unblock bluetooth` if `bluetoothctl show` says `Powered: no`; `bluetoothctl power on`.
- Polar H10: moisten the strap electrodes and wear it; it advertises only while it detects skin
  contact. It needs no pairing or bonding for HR or PMD ECG; if a phone app is connected, close it
  (the H10 accepts two connections, but one ECG stream). `ecg-edge ble scan` lists it as
  "Polar H10 XXXXXXXX". Do not pair it in bluetoothctl: a stale bond makes BlueZ fail connections.
- MTU: BlueZ negotiates it itself (up to 517, the H10 answers 232); bleak's BlueZ backend reports
  23 until `_acquire_mtu()` is called, which this client does before its MTU check.
- The first second after putting the strap on saturates; expect `Gap`s when the strap moves out
  of range, and a rate slightly above 130 Hz (`stats.rate_ppm`).

Nothing is lost silently (accounting: `firmware_bridge.link_stats`). A frame the client refuses
(undecodable, implausible timing or gain: `malformed`; a rate, format, lead or gain other than the
stream's: `rejected`) and notifications dropped because the bounded queue was full (`overflow`)
are counted, and the iterator yields a `Chunk` with `error` set and no samples at that point, so
the engine logs an error event; the samples themselves are lost, as the next gap shows.
"""
from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from edge_runtime.errors import ConfigError, require
from edge_runtime.sources import Chunk
from firmware_bridge import hrs, open_profile as op, polar
from firmware_bridge.errors import ProfileError, StreamError
from firmware_bridge.link_stats import LinkStats

log = logging.getLogger(__name__)
_ADDRESS = re.compile(r"^([0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}$|^[0-9A-Fa-f]{8}(-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12}$")
_LINK_LOST, _CLOSED = object(), object()
#: Heart-rate values kept for `EcgClient.heart_rates` when nobody reads them (one a second).
HEART_RATE_BACKLOG = 3600
#: Notifications the client buffers for a slow consumer (`EcgClient(queue_size=...)`): about 38 min
#: of Polar H10 ECG (0.56 s each) or 30 min of open-profile 250 Hz int16, about 1.5 MB. Beyond it
#: notifications are dropped, counted in `stats.overflow` and lost (the next frame shows the gap).
QUEUE_SIZE = 4096


class _NotFound(StreamError):
    """No matching device advertised within the scan timeout (retried while reconnecting)."""


def _bleak() -> Any:
    return require("bleak", "edge", "BLE streaming")


def _backends(backend: Any) -> tuple[Any, Any]:
    """(client class, scanner class) from None, a (client, scanner) pair, or an object with
    `client_backend` and `scanner_backend` (such as `bumble_backend.VirtualLink`)."""
    if backend is None:
        return None, None
    if isinstance(backend, tuple):
        return backend
    return getattr(backend, "client_backend", backend), getattr(backend, "scanner_backend", None)


class _PolarProfile:
    """Polar H10 PMD: features from the control point, START_ECG, frames indexed by timestamps."""

    name, service, data, control = "polar", polar.PMD_SERVICE, polar.PMD_DATA, polar.PMD_CONTROL
    start, stop, fs = polar.START_ECG, polar.STOP_ECG, polar.HR_ECG_FS
    frame_bytes = 10 + 3 * 73

    def __init__(self, guard: polar.ClockGuard) -> None:
        self.indexer = polar.PolarSampleIndexer(guard=guard)  # kept across reconnects: the clock continues

    async def prepare(self, client: Any) -> None:
        features = polar.decode_features(await client.read_gatt_char(self.control))
        if "ECG" not in features:
            raise StreamError(f"{client.address}: the PMD service offers {sorted(features)}, not ECG")

    def start_response(self, data: bytes) -> bool:
        """True for the answer to START (raising if it is an error); False for other responses."""
        r = polar.decode_control_response(data)
        if r.op != polar.OP_START:
            return False
        if not r.ok:
            raise StreamError(f"the device refused START ECG: {r.error_name} (PMD error {r.error})")
        return True

    def decode(self, data: bytes, host_time: float) -> tuple[np.ndarray, polar.IndexedFrame, int | None]:
        frame = polar.decode_ecg_frame(data)
        idx = self.indexer.feed(frame, host_time)
        return frame.samples_mv, idx, frame.first_sample_time_ns(idx.period_ns)


class _OpenProfile:
    """The open profile: config from the info characteristic, START, packets indexed by sample index."""

    name, service, data, control = "open", op.OPEN_SERVICE, op.OPEN_DATA, op.OPEN_CONTROL
    start, stop = op.START, op.STOP

    def __init__(self, guard: polar.ClockGuard) -> None:
        self.indexer = op.OpenSampleIndexer(guard=guard)
        self.fs, self.frame_bytes, self.config = 250.0, op.HEADER_SIZE + 2, None

    async def prepare(self, client: Any) -> None:
        self.config = op.decode_config(await client.read_gatt_char(op.OPEN_INFO))
        self.indexer.expect(self.config)  # every packet must match it (StreamChangeError otherwise)
        self.fs = float(self.config.fs_hz)
        self.frame_bytes = op.HEADER_SIZE + self.config.samples_per_packet * op.FORMATS[self.config.fmt]

    def start_response(self, data: bytes) -> bool:
        r = op.decode_control_response(data)
        if r.op != op.OP_START:
            return False
        if not r.ok:
            raise StreamError(f"the device refused START: {r.result_name} (result {r.result})")
        return True

    def decode(self, data: bytes, host_time: float) -> tuple[np.ndarray, polar.IndexedFrame, int | None]:
        packet = op.decode_packet(data)
        return packet.samples_mv, self.indexer.feed(packet, host_time), packet.timestamp_us * 1000


PROFILES = {"polar": _PolarProfile, "open": _OpenProfile}


class EcgClient:
    """An async iterator of `Chunk`s from one wearable, reconnecting after drops.

    target: advertised name or address; None takes the first device advertising the profile's
    service (or, for "polar", a name starting "Polar H10"). backend: None for bleak's platform
    backend (BlueZ on a Pi), a (client, scanner) pair of bleak backend classes, or an object with
    `client_backend` and `scanner_backend` (`bumble_backend.VirtualLink`). on_heart_rate(hr,
    host_time) receives Heart Rate Service values while streaming (also queued in `heart_rates`).
    max_reconnects: attempts per drop before giving up with `StreamError` (None: forever).
    queue_size: notifications buffered for the consumer (`QUEUE_SIZE`); more are dropped and
    counted (`stats.overflow`, lost). time_scale: device seconds per host second (None: the
    backend's `time_scale`, e.g. a virtual wearable's replay speed, else 1); clock_margin_s: how
    far ahead of the host clock a device timestamp may be before the frame is refused as corrupt
    (`polar.ClockGuard`).
    """

    def __init__(self, target: str | None = None, profile: str = "polar", *, backend: Any = None,
                 scan_timeout: float = 10.0, connect_timeout: float = 10.0, response_timeout: float = 5.0,
                 reconnect: bool = True, initial_backoff_s: float = 0.25, max_backoff_s: float = 30.0,
                 max_reconnects: int | None = None,
                 on_heart_rate: Callable[[hrs.HeartRate, float], None] | None = None,
                 queue_size: int = QUEUE_SIZE, time_scale: float | None = None, clock_margin_s: float = 2.0) -> None:
        if profile not in PROFILES:
            raise ConfigError(f"profile: expected one of {sorted(PROFILES)}, got {profile!r}")
        if not (isinstance(queue_size, int) and queue_size >= 1):
            raise ConfigError(f"queue_size: expected a whole number of notifications >= 1, got {queue_size!r}")
        time_scale = time_scale if time_scale is not None else float(getattr(backend, "time_scale", 1.0))
        if not (time_scale > 0 and clock_margin_s > 0):
            raise ConfigError(f"time_scale, clock_margin_s: expected numbers > 0, got {time_scale!r}, {clock_margin_s!r}")
        for name, value in (("scan_timeout", scan_timeout), ("connect_timeout", connect_timeout),
                            ("response_timeout", response_timeout), ("initial_backoff_s", initial_backoff_s),
                            ("max_backoff_s", max_backoff_s)):
            if not value > 0:
                raise ConfigError(f"{name}: expected a number of seconds > 0, got {value!r}")
        self.target, self.reconnect, self.on_heart_rate = target, reconnect, on_heart_rate
        self.scan_timeout, self.connect_timeout, self.response_timeout = scan_timeout, connect_timeout, response_timeout
        self.initial_backoff_s, self.max_backoff_s, self.max_reconnects = initial_backoff_s, max_backoff_s, max_reconnects
        self._client_backend, self._scanner_backend = _backends(backend)
        self._profile = PROFILES[profile](polar.ClockGuard(time_scale, clock_margin_s))
        self.stats = LinkStats(fs=self._profile.fs)
        self.heart_rates: asyncio.Queue[tuple[float, hrs.HeartRate]] = asyncio.Queue(HEART_RATE_BACKLOG)
        self.queue_size = queue_size
        self._data: asyncio.Queue[Any] = asyncio.Queue()  # bounded by hand: the sentinels always fit
        self._overflowed = 0  # notifications dropped since the consumer last heard of it
        self._control: asyncio.Queue[bytes] = asyncio.Queue()
        self._client: Any = None
        self._generation = 0  # one per connection attempt
        self._live: int | None = None  # the attempt whose disconnect means "link lost"
        self._closed = self._started = False
        self.mtu: int | None = None

    @property
    def fs(self) -> float:
        """The profile's nominal rate (the open profile's after the first connection)."""
        return self._profile.fs

    # --- async context manager and iterator --------------------------------------------------------

    async def __aenter__(self) -> EcgClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __aiter__(self) -> EcgClient:
        return self

    async def __anext__(self) -> Chunk:
        if not self._started and not self._closed:
            await self.connect()
        while True:
            if self._closed:
                raise StopAsyncIteration
            if self._overflowed:
                n, self._overflowed = self._overflowed, 0
                return self._notice(f"notification queue full ({self.queue_size}): {n} notifications dropped, "
                                    "their samples lost")
            item = await self._data.get()
            if item is _CLOSED:
                raise StopAsyncIteration
            if item is _LINK_LOST:
                if not self.reconnect:
                    await self.aclose()
                    raise StopAsyncIteration
                await self._reconnect()
                continue
            chunk = self._decode(*item)
            if chunk is not None:
                return chunk

    async def connect(self) -> None:
        """Find the device, connect and start streaming (the first connection: errors propagate)."""
        await self._session()

    async def aclose(self) -> None:
        """Stop the stream (best effort), disconnect, and end the iteration."""
        if self._closed:
            return
        self._closed, self._live = True, None
        client, self._client = self._client, None
        if client is not None and client.is_connected:
            try:
                await asyncio.wait_for(client.write_gatt_char(self._profile.control, self._profile.stop, response=True),
                                       self.response_timeout)
            except Exception as exc:  # the link may be going down anyway
                log.debug("STOP failed: %r", exc)
            await client.disconnect()
        self._data.put_nowait(_CLOSED)

    # --- notification callbacks (bleak calls them in the event loop) -------------------------------

    def _on_data(self, _char: Any, data: bytearray) -> None:
        if self._data.qsize() >= self.queue_size:  # a stalled consumer: drop, count, tell it later
            self.stats.overflow += 1
            self._overflowed += 1
            return
        self._data.put_nowait((time.monotonic(), bytes(data)))

    def _on_control(self, _char: Any, data: bytearray) -> None:
        self._control.put_nowait(bytes(data))

    def _on_heart_rate(self, _char: Any, data: bytearray) -> None:
        now = time.monotonic()
        try:
            hr = hrs.decode_heart_rate(data)
        except ProfileError as exc:
            self.stats.bad_frame(str(exc))
            return
        if self.heart_rates.full():  # nobody reads them: keep the newest
            self.heart_rates.get_nowait()
        self.heart_rates.put_nowait((now, hr))
        if self.on_heart_rate is not None:
            self.on_heart_rate(hr, now)

    def _on_disconnect(self, generation: int, _client: Any) -> None:
        if generation == self._live and not self._closed:
            self._client, self._live = None, None
            self._data.put_nowait(_LINK_LOST)

    # --- connection --------------------------------------------------------------------------------

    async def _find(self) -> Any:
        async with _adapter_errors():
            return await self._scan_for_target()

    async def _scan_for_target(self) -> Any:
        scanner = _bleak().BleakScanner
        kwargs = {"timeout": self.scan_timeout}
        if self._scanner_backend is not None:
            kwargs["backend"] = self._scanner_backend
        if self.target is not None and _ADDRESS.match(self.target):
            device = await scanner.find_device_by_address(self.target, **kwargs)
        elif self.target is not None:
            device = await scanner.find_device_by_name(self.target, **kwargs)
        else:
            service, polar_like = self._profile.service, self._profile.name == "polar"
            device = await scanner.find_device_by_filter(
                lambda d, ad: service in ad.service_uuids or (polar_like and (ad.local_name or "").startswith("Polar H10")),
                **kwargs)
        if device is None:
            what = self.target or f"a device advertising the {self._profile.name} service"
            raise _NotFound(f"{what}: not found within {self.scan_timeout:g} s of scanning "
                            "(is it on, in range, and not connected to another app?)")
        return device

    async def _check_mtu(self, client: Any) -> None:
        backend = getattr(client, "_backend", None)
        if getattr(backend, "_mtu_size", 0) is None and hasattr(backend, "_acquire_mtu"):
            try:  # BlueZ reports 23 until asked (bleak's examples/mtu_size.py)
                await backend._acquire_mtu()
            except Exception as exc:
                log.warning("could not read the ATT MTU from BlueZ (%r); relying on the device's answer", exc)
                return
        self.mtu = client.mtu_size
        needed = self._profile.frame_bytes + 3
        if self.mtu < needed:
            raise StreamError(f"{client.address}: ATT MTU {self.mtu} is too small for {self._profile.name} frames "
                              f"({self._profile.frame_bytes} bytes need an MTU >= {needed})")

    async def _session(self) -> None:
        """One connection: find, connect, check, subscribe, START, verify the response."""
        bleak = _bleak()
        device = await self._find()
        self._generation += 1
        generation = self._generation
        kwargs = {} if self._client_backend is None else {"backend": self._client_backend}
        client = bleak.BleakClient(device, disconnected_callback=functools.partial(self._on_disconnect, generation),
                                   timeout=self.connect_timeout, **kwargs)
        await client.connect()
        try:
            await self._profile.prepare(client)
            await self._check_mtu(client)
            self.stats.fs = self._profile.fs
            await client.start_notify(self._profile.control, self._on_control)
            await client.start_notify(self._profile.data, self._on_data)
            if client.services.get_characteristic(hrs.HEART_RATE_MEASUREMENT) is not None:
                await client.start_notify(hrs.HEART_RATE_MEASUREMENT, self._on_heart_rate)
            while not self._control.empty():
                self._control.get_nowait()
            await client.write_gatt_char(self._profile.control, self._profile.start, response=True)
            await asyncio.wait_for(self._start_response(), self.response_timeout)
        except BaseException:
            await client.disconnect()  # not live yet: its disconnect is no link loss
            raise
        if not client.is_connected:  # dropped during setup (its callback was ignored)
            raise bleak.exc.BleakError(f"{client.address}: disconnected while starting the stream")
        self._client, self._live, self._started = client, generation, True

    async def _start_response(self) -> None:
        while not self._profile.start_response(await self._control.get()):
            pass

    async def _reconnect(self) -> None:
        """Reconnect with exponential backoff; non-transient errors (refusal, MTU) propagate."""
        bleak = _bleak()
        delay, attempts, last = self.initial_backoff_s, 0, None
        while not self._closed:
            if self.max_reconnects is not None and attempts >= self.max_reconnects:
                raise StreamError(f"{self.target or 'device'}: gave up after {attempts} reconnect attempts: {last}")
            await asyncio.sleep(delay)
            try:
                await self._session()
            except (_NotFound, bleak.exc.BleakError, TimeoutError, OSError, EOFError) as exc:
                attempts, last = attempts + 1, exc
                delay = min(2 * delay, self.max_backoff_s)
                log.info("reconnect attempt %d failed: %r", attempts, exc)
                continue
            self.stats.mark_reconnect()
            self._profile.indexer.new_connection()
            return

    # --- decoding ----------------------------------------------------------------------------------

    def _notice(self, error: str, host_time: float = 0.0) -> Chunk:
        """A Chunk without samples saying what was refused at the current end of the stream."""
        return Chunk(np.empty((1, 0)), self.stats.next_index, self._profile.fs, None, host_time or time.monotonic(),
                     error=error)

    def _decode(self, host_time: float, payload: bytes) -> Chunk | None:
        """Decode one notification into a Chunk (None for duplicates; an `error` Chunk for refused frames)."""
        try:
            samples_mv, idx, t_ns = self._profile.decode(payload, host_time)
        except op.StreamChangeError as exc:
            self.stats.reject(str(exc))
            log.info("rejected frame: %s", exc)
            return self._notice(str(exc), host_time)
        except ProfileError as exc:
            self.stats.bad_frame(str(exc))
            log.debug("malformed frame: %s", exc)
            return self._notice(str(exc), host_time)
        span = self.stats.account(idx.first_index, idx.n, host_time, t_ns, idx.period_ns)
        if span is None:
            return None
        a, b = span
        return Chunk(np.asarray(samples_mv[a:b], dtype=np.float64)[None, :], idx.first_index + a, self._profile.fs,
                     None if t_ns is None else t_ns + round(a * idx.period_ns), host_time)


@contextlib.asynccontextmanager
async def _adapter_errors() -> Any:
    """No adapter or no BlueZ: one line saying so, instead of a D-Bus traceback."""
    bleak = _bleak()
    try:
        yield
    except (OSError, bleak.exc.BleakError) as exc:
        if isinstance(exc, _NotFound):
            raise
        raise StreamError(
            f"no Bluetooth adapter reachable ({type(exc).__name__}: {exc}); on Linux bleak needs BlueZ: "
            "`sudo systemctl start bluetooth`, `bluetoothctl power on` (see README, Raspberry Pi setup)") from None


@dataclass(frozen=True)
class ScanResult:
    """One advertiser: `profile` is "polar", "open", "hrs" (heart rate only) or None."""

    name: str | None
    address: str
    rssi: int
    service_uuids: tuple[str, ...]
    profile: str | None


def _guess_profile(name: str | None, uuids: list[str]) -> str | None:
    if polar.PMD_SERVICE in uuids or (name or "").startswith("Polar H10"):
        return "polar"
    if op.OPEN_SERVICE in uuids:
        return "open"
    return "hrs" if hrs.HEART_RATE_SERVICE in uuids else None


async def scan(timeout: float = 5.0, backend: Any = None, ecg_only: bool = False) -> list[ScanResult]:
    """Advertisers seen within `timeout` s, strongest first (for `ecg-edge ble scan`)."""
    bleak = _bleak()
    scanner_backend = _backends(backend)[1]
    kwargs = {} if scanner_backend is None else {"backend": scanner_backend}
    async with _adapter_errors():
        found = await bleak.BleakScanner.discover(timeout, return_adv=True, **kwargs)
    results = [ScanResult(ad.local_name, device.address, ad.rssi, tuple(ad.service_uuids),
                          _guess_profile(ad.local_name, ad.service_uuids)) for device, ad in found.values()]
    if ecg_only:
        results = [r for r in results if r.profile in ("polar", "open")]
    return sorted(results, key=lambda r: -r.rssi)
