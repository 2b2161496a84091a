"""BLE end to end with no adapter: virtual wearable (bumble) -> LocalLink -> bleak's public API through
the bumble backend -> EcgClient -> Chunks, compared sample by sample with what the device sent.

Every test runs its own event loop (`asyncio.run`) and bounds every wait with a timeout.
"""
from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("bleak")
pytest.importorskip("bumble")

from bleak import BleakClient, BleakScanner  # noqa: E402

from firmware_bridge import hrs, open_profile as op, polar  # noqa: E402
from firmware_bridge.bumble_backend import virtual_link  # noqa: E402
from firmware_bridge.client import EcgClient, StreamError, scan  # noqa: E402
from firmware_bridge.link_stats import LinkStats  # noqa: E402
from firmware_bridge.virtual import Faults, VirtualWearable, r_peaks, replay_signal  # noqa: E402

FS = polar.HR_ECG_FS


def run(coro, timeout: float = 60.0):
    """Run a coroutine in a fresh event loop, bounded by `timeout` seconds."""
    async def bounded():
        return await asyncio.wait_for(coro, timeout)
    return asyncio.run(bounded())


def synthetic_uv(seconds: float, fs: float = FS, seed: int = 0, amplitude: int = 1500) -> tuple[np.ndarray, np.ndarray]:
    """Seeded ECG-like test signal in µV (Gaussian QRS and T waves at jittered beats, plus noise),
    and its true beat times in s."""
    rng = np.random.default_rng(seed)
    n = int(seconds * fs)
    beats = np.cumsum(rng.uniform(0.6, 1.1, size=int(seconds / 0.6) + 2))
    beats = beats[beats < seconds - 0.5]
    t = np.arange(n) / fs
    x = rng.normal(0, 20, n)
    for b in beats:
        x += amplitude * (np.exp(-0.5 * ((t - b) / 0.015) ** 2) + 0.25 * np.exp(-0.5 * ((t - b - 0.25) / 0.05) ** 2))
    return np.rint(x).astype(np.int32), beats


async def wait_until(predicate, timeout: float, task: asyncio.Task | None = None) -> None:
    """Poll `predicate` until true; fail after `timeout` s or when `task` died."""
    async with asyncio.timeout(timeout):
        while not predicate():
            if task is not None and task.done():
                task.result()  # re-raise the consumer's error
                raise AssertionError("the consumer stopped early")
            await asyncio.sleep(0.005)


async def stream_all(wearable: VirtualWearable, timeout: float = 30.0, **client_kw):
    """Stream the wearable's whole signal through EcgClient (bounded by `timeout`); return (chunks, client).
    Throughput is measured by `ecg-edge bench ble`, not asserted here."""
    async with virtual_link(wearable) as vlink:
        chunks: list = []
        async with EcgClient(wearable.name, wearable.profile, backend=vlink, initial_backoff_s=0.01,
                             connect_timeout=5, scan_timeout=5, **client_kw) as client:
            async def consume():
                async for chunk in client:
                    chunks.append(chunk)
            task = asyncio.create_task(consume())
            await asyncio.wait_for(wearable.finished.wait(), timeout)
            last = wearable.log.delivered()[-1]
            await wait_until(lambda: bool(chunks) and chunks[-1].end_index >= last.first_index + last.n, 5, task)
        await asyncio.wait_for(task, 5)
    return chunks, client


def assert_exact(chunks: list, sent: np.ndarray, scale: float = 1000.0) -> np.ndarray:
    """Every received sample equals the sent one at its index; return the indices received."""
    idx = np.concatenate([np.arange(c.first_index, c.end_index) for c in chunks])
    got = np.concatenate([c.samples[0] for c in chunks])
    assert all(c.samples.shape == (1, c.n) for c in chunks)
    assert np.array_equal(np.rint(got * scale).astype(np.int64), sent[idx])
    assert np.all(np.diff(idx) > 0), "indices must increase"
    return idx


def test_mitdb_record_100_streams_exactly(mitdb_root: Path) -> None:
    """(a) Five minutes of MIT-BIH 100 (MLII at 130 Hz, µV), accelerated: every sample arrives intact."""
    wfdb = pytest.importorskip("wfdb")
    signal = replay_signal(mitdb_root / "100", lead="MLII", fs_out=FS, duration_s=300)
    assert signal.shape == (39000,) and signal.dtype == np.int32
    ann = wfdb.rdann(str(mitdb_root / "100"), "atr", sampto=300 * 360)
    beats = ann.sample[np.isin(ann.symbol, list("NLRAaVJSjEe/fFQ"))] / 360.0
    peaks = r_peaks(signal, FS) / FS
    assert peaks.size == beats.size  # resampled record still aligned with its annotations
    assert np.abs(peaks - beats).max() < 0.05

    wearable = VirtualWearable(signal, FS, speed=1000.0, drift_ppm=250.0)
    chunks, client = run(stream_all(wearable))
    assert_exact(chunks, signal.astype(np.int64))
    st = client.stats
    assert st.received == signal.size and st.lost == 0 and st.received + st.lost == signal.size
    assert (st.malformed, st.duplicated, st.reconnects, chunks[0].first_index) == (0, 0, 0, 0)
    assert client.mtu == 247 and all(c.fs == FS and c.n == 73 for c in chunks[:-1])
    period = 1e9 / (FS * (1 + 250e-6))
    expected_t = wearable.epoch_ns + np.array([c.first_index for c in chunks]) * period
    err_ns = np.abs(np.array([c.device_time_ns for c in chunks]) - expected_t)
    assert err_ns[0] < 200_000 and err_ns[1:].max() < 1000  # frame 1 has only the nominal period to go by
    assert st.rate_ppm == pytest.approx(250.0, abs=1.0)


def test_drops_and_disconnects_are_flagged_exactly() -> None:
    """(b) 1 % of notifications dropped (seeded), 3 forced disconnects: the stream resumes after each
    and every loss is flagged with its exact position and sample count."""
    signal, _ = synthetic_uv(300, seed=1)
    faults = Faults(drop_fraction=0.01, seed=7, disconnect_after=(120, 260), disconnect_at_s=(200.0,), outage_s=2.0)
    wearable = VirtualWearable(signal, FS, speed=1000.0, faults=faults, drift_ppm=-120.0)
    chunks, client = run(stream_all(wearable))
    log, st = wearable.log, client.stats
    assert_exact(chunks, signal.astype(np.int64))
    assert st.reconnects == 3 and len(log.outages) == 3 and log.connections == 4
    assert sum(f.status == "dropped" for f in log.frames) >= 3
    assert [(g.first_index, g.n) for g in st.gaps] == log.missing_ranges()
    after = [g for g in st.gaps if g.after_reconnect]
    assert len(after) == 3 and all(any(g.first_index <= a and a + n <= g.end_index for g in after)
                                   for a, n in log.outages)
    end = log.delivered()[-1].first_index + log.delivered()[-1].n
    assert st.received + st.lost == st.span == end
    assert st.received == sum(f.n for f in log.delivered())
    unsent_tail = signal.size - end  # frames after the last delivered one cannot be flagged by anyone
    assert unsent_tail == sum(f.n for f in log.frames if f.first_index >= end)
    assert st.malformed == 0 and st.duplicated == 0
    assert st.rate_ppm == pytest.approx(-120.0, abs=1.0)


def test_heart_rate_and_rr_equal_what_the_device_sent() -> None:
    """(c) HRS values received equal those sent, from given RR intervals and from R peaks."""
    rr = np.random.default_rng(3).uniform(0.55, 1.2, 400)

    async def main(wearable: VirtualWearable, n: int):
        got = []
        async with virtual_link(wearable) as vlink:
            async with EcgClient(wearable.name, backend=vlink, on_heart_rate=lambda hr, t: got.append(hr)) as client:
                task = asyncio.create_task(anext(client))  # streaming runs while HR flows
                await wait_until(lambda: len(got) >= n, 10)
                task.cancel()
        return got

    given = VirtualWearable(synthetic_uv(120, seed=2)[0], FS, speed=100.0, rr_s=rr)
    got = run(main(given, 40))
    sent = given.log.heart_rates[:len(got)]
    assert [(h.bpm, h.rr_1024) for h in got] == sent and len(got) >= 40
    rr_sent = [v for _, rrs in sent for v in rrs]
    assert rr_sent == [round(r * 1024) for r in rr[1:len(rr_sent) + 1]]  # beat k's RR is rr[k]
    assert all(h.contact is True for h in got)

    signal, beats = synthetic_uv(120, seed=4)
    derived = VirtualWearable(signal, FS, speed=100.0)
    got = run(main(derived, 30))
    assert [(h.bpm, h.rr_1024) for h in got] == derived.log.heart_rates[:len(got)]
    peaks = r_peaks(signal, FS)
    assert peaks.size == beats.size and np.abs(peaks / FS - beats).max() < 1.5 / FS  # the true beats
    rr_got = [v for h in got for v in h.rr_1024]
    assert rr_got == [round(d / FS * 1024) for d in np.diff(peaks)[:len(rr_got)]]
    assert np.abs(np.array(rr_got) / 1024 - np.diff(beats)[:len(rr_got)]).max() < 2.5 / FS


@pytest.mark.parametrize("fs, fmt, gain", [(250, "int16", 1000.0), (500, "int24", 2000.0)])
def test_open_profile_round_trip(fs: int, fmt: str, gain: float) -> None:
    """(d) The open profile at 250 Hz int16 and 500 Hz int24: exact round trip of the counts."""
    signal, _ = synthetic_uv(60, fs=fs, seed=fs)
    wearable = VirtualWearable(signal, fs, profile="open", name="ECG Open VIRTUAL", speed=400.0,
                               open_fmt=fmt, open_gain=gain)
    chunks, client = run(stream_all(wearable))
    assert_exact(chunks, wearable.samples, scale=gain)
    assert client.stats.received == signal.size and client.stats.lost == 0
    assert all(c.fs == fs for c in chunks) and client.fs == fs
    assert wearable.samples_per_frame == op.max_samples_per_packet(247, fmt)
    mv = np.concatenate([c.samples[0] for c in chunks])
    assert np.abs(mv - signal / 1000.0).max() <= 0.5 / gain + 1e-12


@pytest.mark.parametrize("profile", ["polar", "open"])
def test_mtu_too_small_is_one_clear_error(profile: str) -> None:
    """(e) A link whose MTU cannot carry a frame: the client raises one StreamError naming the MTU."""
    wearable = VirtualWearable(synthetic_uv(10)[0], FS if profile == "polar" else 250, profile=profile,
                               faults=Faults(max_mtu=185))
    needed = 3 + 10 + 3 * 73 if profile == "polar" else 3 + op.HEADER_SIZE + 2 * op.max_samples_per_packet(247, "int16")

    async def main():
        async with virtual_link(wearable) as vlink:
            client = EcgClient(wearable.name, profile, backend=vlink, connect_timeout=5, scan_timeout=5)
            with pytest.raises(StreamError, match=rf"ATT MTU 185 is too small .* need an MTU >= {needed}\)"):
                await client.connect()
    run(main())
    assert wearable.log.connections == 1 and not wearable.log.frames


def test_device_refuses_start_when_a_frame_does_not_fit() -> None:
    """(e) Without the client's check, the device answers START with INVALID_MTU (real bleak API)."""
    wearable = VirtualWearable(synthetic_uv(10)[0], FS, faults=Faults(max_mtu=100))

    async def main():
        async with virtual_link(wearable) as vlink:
            device = await BleakScanner.find_device_by_name(wearable.name, timeout=5, backend=vlink.scanner_backend)
            async with BleakClient(device, backend=vlink.client_backend, timeout=5) as client:
                responses: asyncio.Queue = asyncio.Queue()
                await client.start_notify(polar.PMD_CONTROL, lambda _, d: responses.put_nowait(bytes(d)))
                await client.write_gatt_char(polar.PMD_CONTROL, polar.START_ECG, response=True)
                return client.mtu_size, polar.decode_control_response(await asyncio.wait_for(responses.get(), 5))
    mtu, response = run(main())
    assert mtu == 100 and response.error_name == "INVALID_MTU" and not response.ok


def test_corrupt_and_compressed_frames_are_counted_and_skipped() -> None:
    """(e) Damaged frames count as malformed (with the reason), their samples as one exact gap each."""
    signal, _ = synthetic_uv(60, seed=5)
    wearable = VirtualWearable(signal, FS, speed=1000.0, faults=Faults(corrupt=(5, 40), compressed=(20,)))
    chunks, client = run(stream_all(wearable))
    st = client.stats
    assert st.malformed == 3 and st.reconnects == 0
    assert any("delta-compressed" in reason for reason in st.malformed_reasons)
    assert [(g.first_index, g.n) for g in st.gaps] == [(5 * 73, 73), (20 * 73, 73), (40 * 73, 73)]
    assert st.received == signal.size - 3 * 73 and st.received + st.lost == signal.size
    assert_exact(chunks, signal.astype(np.int64))


def test_scan_and_the_bleak_api_on_the_virtual_link() -> None:
    """Scanner (by name, by service UUID, `scan()`) and client basics through bleak's public API."""
    wearable = VirtualWearable(synthetic_uv(10)[0], FS)

    async def main():
        async with virtual_link(wearable) as vlink:
            found = await scan(0.3, backend=vlink)
            by_uuid = await BleakScanner.discover(0.3, service_uuids=[polar.PMD_SERVICE], backend=vlink.scanner_backend)
            none = await BleakScanner.discover(0.2, service_uuids=[op.OPEN_SERVICE], backend=vlink.scanner_backend)
            dropped = []
            client = BleakClient(wearable.address, lambda c: dropped.append(c), backend=vlink.client_backend, timeout=5)
            await client.connect()
            features = polar.decode_features(await client.read_gatt_char(polar.PMD_CONTROL))
            location = await client.read_gatt_char("2a38")
            services = {s.uuid for s in client.services}
            props = client.services.get_characteristic(polar.PMD_CONTROL).properties
            await wearable.device.disconnect(next(iter(wearable.device.connections.values())), 0x13)
            await wait_until(lambda: bool(dropped), 5)
            return found, by_uuid, none, features, location, services, props, client.is_connected
    found, by_uuid, none, features, location, services, props, connected = run(main())
    assert [(r.name, r.address, r.profile) for r in found] == [(wearable.name, wearable.address, "polar")]
    assert [d.name for d in by_uuid] == [wearable.name] and none == []
    assert features == {"ECG"} and location == bytearray(b"\x01")
    assert {polar.PMD_SERVICE, hrs.HEART_RATE_SERVICE} <= services
    assert set(props) == {"read", "write", "indicate"} and connected is False


def test_client_gives_up_after_max_reconnects() -> None:
    """A device that vanishes: bounded reconnect attempts with backoff, then one StreamError."""
    wearable = VirtualWearable(synthetic_uv(60)[0], FS, speed=50.0)

    async def main():
        async with virtual_link(wearable) as vlink:
            client = EcgClient(wearable.name, backend=vlink, scan_timeout=0.2, initial_backoff_s=0.01,
                               max_backoff_s=0.02, max_reconnects=2)
            async with client:
                await anext(client)
                await wearable.close()  # stops advertising and drops the link
                with pytest.raises(StreamError, match="gave up after 2 reconnect attempts"):
                    async for _ in client:
                        pass
    run(main(), timeout=20)


def test_stream_stats_duplicates_reordering_and_overlap() -> None:
    """The accounting alone: received + lost == span under gaps, late frames and duplicates."""
    st = LinkStats(fs=FS)
    assert st.account(0, 10, 0.0) == (0, 10)
    assert st.account(20, 10, 0.1) == (0, 10)          # gap [10, 20)
    assert st.account(0, 10, 0.2) is None               # duplicate
    assert st.account(12, 5, 0.3) == (0, 5)             # late: fills part of the gap
    assert st.account(25, 10, 0.4) == (5, 10)           # overlaps the tail: only 30..35 is new
    assert [(g.first_index, g.n) for g in st.gaps] == [(10, 2), (17, 3)]
    assert (st.received, st.lost, st.duplicated, st.reordered, st.span) == (30, 5, 15, 5, 35)
    assert st.received + st.lost == st.span


def test_replay_signal_from_arrays_and_npy(tmp_path: Path) -> None:
    """replay_signal: mV array or .npy at any rate -> int32 µV at 130 Hz, aligned, anti-aliased."""
    fs_in = 360.0
    t = np.arange(int(20 * fs_in)) / fs_in
    x_mv = np.sin(2 * np.pi * 1.0 * t) + 0.5 * np.sin(2 * np.pi * 100.0 * t)  # 100 Hz: above 65 Hz Nyquist
    np.save(tmp_path / "x.npy", x_mv)
    y = replay_signal(tmp_path / "x.npy", fs_in=fs_in, fs_out=FS, start_s=2.0, duration_s=10.0)
    assert y.dtype == np.int32 and y.shape == (1300,)
    ty = 2.0 + np.arange(y.size) / FS
    inner = slice(30, -30)  # away from the record's edges
    assert np.abs(y[inner] - 1000 * np.sin(2 * np.pi * ty[inner])).max() < 15  # 100 Hz removed, no delay
    assert np.array_equal(replay_signal(x_mv, fs_in=fs_in, start_s=2.0, duration_s=10.0), y)
    from edge_runtime.errors import DatasetError
    with pytest.raises(DatasetError, match="fs_in"):
        replay_signal(x_mv)


@pytest.mark.hardware
def test_a_real_polar_h10_streams_through_bluez() -> None:
    """On a Raspberry Pi (BlueZ) with a worn Polar H10: ECG_EDGE_HARDWARE=1 [ECG_EDGE_H10=name] pytest -m hardware."""
    import os

    async def go():
        chunks = []
        async with EcgClient(os.environ.get("ECG_EDGE_H10") or None, "polar", scan_timeout=20) as client:
            async for chunk in client:
                chunks.append(chunk)
                if chunk.end_index >= 30 * FS:
                    break
        return chunks, client

    chunks, client = run(go(), timeout=90)
    s = client.stats
    assert s.received + s.lost == s.span and s.received >= 25 * FS
    assert abs(client.stats.rate_ppm) < 10_000  # the H10 runs within 1 % of 130 Hz
    x = np.concatenate([c.samples[0] for c in chunks])
    assert np.isfinite(x).all() and 0.05 < np.ptp(x[int(2 * FS):]) < 20  # mV, past the first saturated second


# --- reliability: outages, stream changes, corrupt frames, bounded queue (issue 16) ---------------

def engine_records(chunks: list, fs: float):
    """Feed the client's chunks to the streaming engine (beats, SQI, no model): (windows, events, stats)."""
    from edge_runtime.beats import RPeakDetector
    from edge_runtime.engine import Engine
    from edge_runtime.signal import Preprocessor, PreprocessConfig

    engine = Engine(Preprocessor(PreprocessConfig(), fs, ("CHEST",)), None, RPeakDetector(fs))
    windows, events = engine.run(chunks)
    return windows, events, engine.stats


def touching(windows: list, ranges: list[tuple[int, int]], fs: float) -> list:
    """Windows whose span overlaps one of the sample ranges (first, n)."""
    return [w for w in windows if any(w.t_start_s < (a + n) / fs and a / fs < w.t_end_s for a, n in ranges)]


@pytest.mark.parametrize("outage_s", [2.0, 0.6])
def test_open_profile_outages_are_counted_lost_and_flag_their_windows(outage_s: float) -> None:
    """Open profile at 250 Hz, three forced disconnects: the samples the device measured while offline
    are lost exactly (from the packets' device timestamps across the restart), and the engine logs a
    gap for each and flags every window touching one (2 s: reset; 0.6 s: bridged and flagged)."""
    fs = 250
    signal, _ = synthetic_uv(150, fs=fs, seed=11)
    faults = Faults(disconnect_after=(40, 120, 200), outage_s=outage_s)
    wearable = VirtualWearable(signal, fs, profile="open", name="ECG Open VIRTUAL", speed=400.0, faults=faults,
                               drift_ppm=200.0)
    chunks, client = run(stream_all(wearable))
    log, st = wearable.log, client.stats
    withheld = sum(n for _, n in log.outages)
    assert len(log.outages) == 3 and withheld == 3 * round(outage_s * fs)
    assert st.reconnects == 3 and st.lost == withheld
    assert [(g.first_index, g.n) for g in st.gaps] == log.missing_ranges() == log.outages
    assert st.received + st.lost == st.span == log.delivered()[-1].first_index + log.delivered()[-1].n
    assert_exact(chunks, wearable.samples, scale=1000.0)  # every sample at its true device index
    windows, events, es = engine_records(chunks, fs)
    assert es.lost == withheld and [e.kind for e in events].count("reset" if outage_s > 1 else "gap") == 3
    hit = touching(windows, log.outages, fs)
    assert all(w.flags["gap"] and not w.usable for w in hit)
    # reset: only the first window after it touches the hole (its filters' start-up); bridged: 2 per 5 s hop
    assert len(hit) == (3 if outage_s > 1 else 6)
    assert len(windows) > 20 and any(w.usable for w in windows)


def test_open_profile_restart_whose_first_packet_is_lost() -> None:
    """The STREAM_START packet after a reconnect arrives damaged (and 2 % of packets are dropped): the
    next packet is placed by its timestamp all the same, so every loss is exact."""
    fs = 250
    signal, _ = synthetic_uv(120, fs=fs, seed=16)
    faults = Faults(drop_fraction=0.02, seed=3, disconnect_after=(40, 150), corrupt=(40,), outage_s=1.5)
    wearable = VirtualWearable(signal, fs, profile="open", name="ECG Open VIRTUAL", speed=400.0, faults=faults)
    chunks, client = run(stream_all(wearable))
    st, log = client.stats, wearable.log
    assert st.reconnects == 2 and st.malformed == 1 and len(log.outages) == 2
    assert [(g.first_index, g.n) for g in st.gaps] == log.missing_ranges()
    assert st.received + st.lost == st.span and st.lost == sum(n for _, n in log.missing_ranges())
    assert_exact(chunks, wearable.samples, scale=1000.0)


def test_open_profile_packets_that_change_the_stream_are_rejected_with_an_event() -> None:
    """A packet whose rate differs from the stream's (info characteristic) is rejected, counted, and the
    engine logs an error for it; its samples are a gap, never relabelled."""
    fs = 250
    signal, _ = synthetic_uv(60, fs=fs, seed=12)
    wearable = VirtualWearable(signal, fs, profile="open", name="ECG Open VIRTUAL", speed=400.0,
                               faults=Faults(wrong_rate=(30,)))
    chunks, client = run(stream_all(wearable))
    st, spp = client.stats, wearable.samples_per_frame
    assert st.rejected == 1 and st.malformed == 0
    assert any("fs_hz: expected 250" in r and "got 500" in r for r in st.rejected_reasons)
    assert [(g.first_index, g.n) for g in st.gaps] == [(30 * spp, spp)] and st.received + st.lost == signal.size
    assert all(c.fs == fs for c in chunks if c.n)
    _, events, es = engine_records(chunks, fs)
    errors = [e for e in events if e.kind == "error"]
    assert len(errors) == 1 and "got 500" in errors[0].detail and es.lost == spp


@pytest.mark.parametrize("profile", ["polar", "open"])
def test_corrupt_well_formed_frames_are_malformed_not_obeyed(profile: str) -> None:
    """One flipped timestamp bit (Polar: 78 h; open: 76 h) and, for the open profile, a subnormal gain:
    rejected as malformed with the reason; the frame's samples are one exact gap, nothing else lost."""
    fs = 130 if profile == "polar" else 250
    signal, _ = synthetic_uv(60, fs=fs, seed=13)
    faults = Faults(flip_time=(25,), bad_gain=(50,) if profile == "open" else ())
    wearable = VirtualWearable(signal, fs, profile=profile, name=f"{profile} VIRTUAL", speed=400.0, faults=faults)
    chunks, client = run(stream_all(wearable))
    st, spp = client.stats, wearable.samples_per_frame
    bad = [25] + ([50] if profile == "open" else [])
    assert st.malformed == len(bad) and st.rejected == 0
    assert any("timestamp" in r for r in st.malformed_reasons)
    assert [(g.first_index, g.n) for g in st.gaps] == [(k * spp, spp) for k in bad] == wearable.log.missing_ranges()
    assert st.lost == len(bad) * spp and st.received + st.lost == signal.size
    assert_exact(chunks, wearable.samples, scale=1000.0)
    _, events, es = engine_records(chunks, fs)
    assert es.lost == st.lost and sum(e.kind == "error" for e in events) == len(bad)


def test_duplicates_and_reordering_through_the_client() -> None:
    """Duplicated and reordered notifications (virtual Faults): counted, nothing lost."""
    signal, _ = synthetic_uv(60, seed=14)
    wearable = VirtualWearable(signal, FS, speed=400.0, faults=Faults(duplicate=(10, 30), reorder=(20,)))
    chunks, client = run(stream_all(wearable))
    st = client.stats
    assert st.duplicated == 2 * 73 and st.reordered == 73 and st.lost == 0 and st.received == signal.size
    assert not st.gaps and st.malformed == st.rejected == 0
    late = [c for k, c in enumerate(chunks) if k and c.first_index < chunks[k - 1].first_index]
    assert [(c.first_index, c.n) for c in late] == [(20 * 73, 73)]  # delivered after frame 21, in its place
    in_order = [c for c in chunks if all(c is not x for x in late)]
    got = np.concatenate([assert_exact(in_order, signal.astype(np.int64)), assert_exact(late, signal.astype(np.int64))])
    assert np.array_equal(np.sort(got), np.arange(signal.size))  # every sample exactly once


def test_a_stalled_consumer_overflows_a_bounded_queue_counted_as_lost() -> None:
    """The notification queue holds at most `queue_size` notifications: a consumer that stalls loses the
    overflow, counted (stats.overflow) and lost exactly, with an error chunk saying so."""
    signal, _ = synthetic_uv(120, seed=15)
    wearable = VirtualWearable(signal, FS, speed=100.0)  # 1.2 s of host time

    async def main():
        async with virtual_link(wearable) as vlink:
            chunks = []
            async with EcgClient(wearable.name, backend=vlink, queue_size=16, connect_timeout=5,
                                 scan_timeout=5) as client:
                chunks.append(await anext(client))
                await asyncio.sleep(0.25)  # the consumer stalls for ~45 notifications
                async for chunk in client:
                    chunks.append(chunk)
                    if chunk.end_index >= signal.size:
                        break
        return chunks, client
    chunks, client = run(main())
    st = client.stats
    frames = len(wearable.log.delivered())
    assert st.overflow > 0 and st.frames == frames - st.overflow
    assert st.lost == 73 * st.overflow and st.received + st.lost == signal.size
    notes = [c for c in chunks if c.error]
    assert notes and all(c.n == 0 for c in notes) and "queue" in notes[0].error
    assert_exact([c for c in chunks if not c.error], signal.astype(np.int64))


# --- the facade: open_wearable picks the device or the virtual wearable (issue 17) ---------------

def test_open_wearable_starts_a_virtual_wearable_for_a_virtual_target(tmp_path: Path) -> None:
    """`virtual:PATH`: a virtual wearable on bumble replays PATH through EcgClient and bleak's API; the
    iteration ends with the recording (Polar) or after `seconds` (open profile at `device_fs`)."""
    from firmware_bridge import VIRTUAL, WearableOptions, open_wearable

    signal, _ = synthetic_uv(20, seed=4)
    np.save(tmp_path / "x.npy", signal / 1000.0)  # mV at 130 Hz

    async def go(options: WearableOptions):
        async with open_wearable(f"{VIRTUAL}{tmp_path / 'x.npy'}", options) as wearable:
            chunks = [c async for c in wearable]
        return wearable, chunks

    wearable, chunks = run(go(WearableOptions(fs=FS, lead="I", speed=None)))
    assert isinstance(wearable.client, EcgClient) and (wearable.fs, wearable.lead) == (FS, "I")
    assert wearable.describe == "virtual polar wearable replaying x.npy"
    assert_exact(chunks, signal.astype(np.int64))
    assert wearable.stats.received == signal.size and wearable.stats.lost == 0
    wearable, chunks = run(go(WearableOptions(profile="open", fs=FS, device_fs=250.0, seconds=10.0, speed=None)))
    assert wearable.fs == 250.0 and wearable.describe.startswith("virtual open wearable")
    assert wearable.stats.received == sum(c.n for c in chunks) == 2500 and wearable.stats.lost == 0


def test_open_wearable_sends_any_other_target_to_bleaks_platform_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    """A name, an address or None: an EcgClient with no backend (bleak picks BlueZ, CoreBluetooth, ...)."""
    import firmware_bridge.wearable as facade
    from firmware_bridge import WearableOptions, open_wearable

    made = []

    class Device:
        fs, stats = 130.0, None

        def __init__(self, target, profile, **kw) -> None:
            made.append((target, profile, kw))

        async def __aenter__(self):
            return self

        async def __aexit__(self, *exc) -> None:
            pass

        def __aiter__(self):
            return self

        async def __anext__(self):
            raise StopAsyncIteration

    monkeypatch.setattr(facade, "EcgClient", Device)

    async def go(target):
        async with open_wearable(target, WearableOptions(profile="open")) as wearable:
            return wearable.describe, wearable.lead, [c async for c in wearable]

    assert run(go("F0:0D:EC:60:00:01")) == ("BLE F0:0D:EC:60:00:01 (open)", "CHEST", [])
    assert run(go(None))[0] == run(go(""))[0] == "BLE any (open)"
    assert made == [("F0:0D:EC:60:00:01", "open", {}), (None, "open", {}), (None, "open", {})]
