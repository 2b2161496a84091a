"""BLE profile codecs: Polar H10 PMD, Heart Rate Service and the project's open ECG profile.

Fixed examples check byte layouts against docs/FACTS.md and docs/ble-profile.md; the indexers
are driven by a simulated H10 clock at 130.3 Hz and by packet streams with drops, duplicates,
reordering and wraparound; hypothesis fuzzes every decoder (a valid object or a ProfileError,
never anything else) and round-trips every encoder. Hypothesis runs derandomized (seeded).
"""
from __future__ import annotations

import re
import uuid
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_runtime.errors import EcgEdgeError
from edge_runtime.spec import KNOWN_LEADS
from firmware_bridge import hrs, open_profile as op, polar
from firmware_bridge.errors import ProfileError

REPO = Path(__file__).resolve().parents[1]
FUZZ = settings(max_examples=3000, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# --- Polar PMD: fixed layouts ----------------------------------------------------------------------

def test_polar_constants_match_facts() -> None:
    assert polar.PMD_SERVICE == "fb005c80-02e7-f387-1cad-8acd2d8df0c8"
    assert polar.PMD_CONTROL == "fb005c81-02e7-f387-1cad-8acd2d8df0c8"
    assert polar.PMD_DATA == "fb005c82-02e7-f387-1cad-8acd2d8df0c8"
    assert polar.START_ECG == bytes([0x02, 0x00, 0x00, 0x01, 0x82, 0x00, 0x01, 0x01, 0x0E, 0x00])
    assert polar.STOP_ECG == b"\x03\x00"
    epoch = datetime(2000, 1, 1, tzinfo=timezone.utc).timestamp()
    assert polar.POLAR_EPOCH_UNIX_NS == int(epoch) * 10**9


def test_polar_ecg_frame_of_73_samples_is_229_bytes_and_round_trips() -> None:
    samples = np.arange(-36, 37, dtype=np.int32) * 1000
    samples[0], samples[-1] = -(1 << 23), (1 << 23) - 1
    data = polar.encode_ecg_frame(599_616_000_123_456_789, samples)
    assert len(data) == 229 and data[0] == 0x00 and data[9] == 0x00
    assert int.from_bytes(data[1:9], "little") == 599_616_000_123_456_789
    assert data[10:13] == b"\x00\x00\x80" and data[-3:] == b"\xff\xff\x7f"
    frame = polar.decode_ecg_frame(bytearray(data))
    assert frame.n == 73 and frame.samples_uv.dtype == np.int32
    np.testing.assert_array_equal(frame.samples_uv, samples)
    np.testing.assert_allclose(frame.samples_mv, samples / 1000.0)
    assert frame.first_sample_time_ns(1e9 / 130) == frame.timestamp_ns - round(72 * 1e9 / 130)


@pytest.mark.parametrize("data, match", [
    (b"\x00" * 9, "length: expected at least 10 bytes"),
    (b"\x02" + b"\x00" * 12, r"measurement type: expected 0x00 \(ECG\), got 0x02 \(ACC\)"),
    (b"\x00" + b"\x00" * 8 + b"\x80" + b"\x00" * 6, "delta-compressed frames are not supported; the H10 "
                                                   "sends raw ECG when started with the settings in START_ECG"),
    (b"\x00" + b"\x00" * 8 + b"\x01" + b"\x00" * 6, "frame type: expected 0x00"),
    (b"\x00" * 10, "payload: expected a non-empty multiple of 3 bytes"),
    (b"\x00" * 14, "payload: .* got 4 bytes"),
])
def test_polar_ecg_frame_refusals_name_the_field(data: bytes, match: str) -> None:
    with pytest.raises(ProfileError, match=match) as info:
        polar.decode_ecg_frame(data)
    assert isinstance(info.value, (EcgEdgeError, ValueError)) and "\n" not in str(info.value)
    assert str(info.value).startswith("polar pmd ecg frame: ")


def test_polar_features_and_control_requests() -> None:
    assert polar.encode_features(["ECG", "ACC"]) == b"\x0f\x05"
    assert polar.decode_features(b"\x0f\x05\x00") == {"ECG", "ACC"}
    assert polar.decode_features(b"\x0f\x7f") == set(polar.MEASUREMENT_TYPES)
    req = polar.decode_control_request(polar.START_ECG)
    assert (req.op, req.measurement_type, req.settings) == (2, 0, {"sample_rate": 130, "resolution": 14})
    assert polar.encode_control_request(req.op, req.measurement_type, req.settings) == polar.START_ECG
    assert polar.decode_control_request(polar.STOP_ECG) == polar.ControlRequest(3, 0, {})
    assert polar.encode_control_request(1, 0) == b"\x01\x00"
    params = polar.encode_settings({"sample_rate": (130,), "resolution": [14], "range": (2, 4, 8)})
    assert polar.decode_settings(params) == {"sample_rate": (130,), "resolution": (14,), "range": (2, 4, 8)}


@pytest.mark.parametrize("data, code", [
    (b"\x02", polar.PmdError.INVALID_LENGTH),
    (b"\x09\x00", polar.PmdError.INVALID_OP_CODE),
    (b"\x03\x00\x00", polar.PmdError.INVALID_LENGTH),
    (b"\x02\x00\x00\x01\x82", polar.PmdError.INVALID_LENGTH),
    (b"\x02\x00\x09\x01\x82\x00", polar.PmdError.INVALID_PARAMETER),
    (b"\x02\x00\x00\x02\x82\x00\x00\x01", polar.PmdError.INVALID_PARAMETER),
    (b"\x02\x00\x00\x01\x82\x00\x00\x01\x82\x00", polar.PmdError.INVALID_PARAMETER),
])
def test_polar_bad_requests_carry_the_error_a_device_answers(data: bytes, code: int) -> None:
    with pytest.raises(polar.PmdRequestError) as info:
        polar.decode_control_request(data)
    assert info.value.code == code and isinstance(info.value, ProfileError)


@pytest.mark.parametrize("code, name", [(0, "SUCCESS"), (1, "INVALID_OP_CODE"), (2, "INVALID_MEASUREMENT_TYPE"),
                                        (3, "NOT_SUPPORTED"), (4, "INVALID_LENGTH"), (5, "INVALID_PARAMETER"),
                                        (6, "ALREADY_IN_STATE"), (8, "INVALID_SAMPLE_RATE"),
                                        (13, "DEVICE_IN_CHARGER"), (14, "DISK_FULL"), (15, "ERROR_15"),
                                        (255, "ERROR_255")])
def test_polar_control_responses_round_trip_with_error_names(code: int, name: str) -> None:
    data = polar.encode_control_response(2, 0, code, more=code == 0, params=b"\x01\x02" if code == 0 else b"")
    assert data[:4] == bytes([0xF0, 2, 0, code])
    resp = polar.decode_control_response(data)
    assert (resp.op, resp.measurement_type, resp.error, resp.error_name) == (2, 0, code, name)
    assert resp.ok == (code == 0) and resp.more == (code == 0)
    assert resp.params == (b"\x01\x02" if code == 0 else b"")
    short = polar.decode_control_response(bytes([0xF0, 2, 0, code]))  # error replies may stop here
    assert (short.error_name, short.more, short.params) == (name, False, b"")


# --- Polar PMD: sample indexing from device time -----------------------------------------------------

def _h10_stream(n_frames: int, fs: float = 130.3, jitter_ns: int = 0, sizes: list[int] | None = None,
                seed: int = 0) -> list[tuple[int, polar.EcgFrame]]:
    """(true first index, frame) of a simulated H10 whose clock ticks at `fs`."""
    rng = np.random.default_rng(seed)
    sizes = sizes or [73] * n_frames
    out, first, t0 = [], 0, 820_000_000 * 10**9
    for n in sizes:
        t = t0 + round((first + n - 1) * 1e9 / fs) + int(rng.integers(-jitter_ns, jitter_ns + 1))
        out.append((first, polar.EcgFrame(t, np.zeros(n, dtype=np.int32))))
        first += n
    return out


@pytest.mark.parametrize("jitter_ns, tol", [(0, 1e-9), (20_000, 2e-6)])
def test_polar_indexer_recovers_exact_indices_at_130_3_hz_with_drops_and_duplicates(jitter_ns: int,
                                                                                   tol: float) -> None:
    stream = _h10_stream(400, jitter_ns=jitter_ns, seed=1)
    rng = np.random.default_rng(2)
    dropped = {2} | set(range(100, 150)) | set(rng.choice(np.arange(160, 400), 30, replace=False).tolist())
    idx, prev_end = polar.PolarSampleIndexer(), 0
    for k, (true_first, frame) in enumerate(stream):
        if k in dropped:
            continue
        got = idx.feed(frame)
        assert (got.first_index, got.n, got.duplicate) == (true_first, 73, False)
        assert got.lost_before == true_first - prev_end and not got.restart
        prev_end = got.end_index
        if k % 7 == 0:  # the same notification delivered twice
            again = idx.feed(frame)
            assert again.duplicate and again.first_index == true_first and again.lost_before == 0
    assert idx.lost == 73 * len(dropped) and idx.duplicates == len(range(0, 400, 7)) - len(
        [k for k in range(0, 400, 7) if k in dropped])
    assert abs(idx.fs / 130.3 - 1) < tol


def test_polar_indexer_handles_reordering_variable_sizes_and_clock_reset() -> None:
    sizes = [int(s) for s in np.random.default_rng(3).integers(40, 80, 60)]
    stream = _h10_stream(60, sizes=sizes)
    order = list(range(60))
    order[20], order[21] = 21, 20
    idx = polar.PolarSampleIndexer()
    for k in order:
        true_first, frame = stream[k]
        got = idx.feed(frame)
        assert got.first_index == true_first
        assert got.duplicate == (k == 20)  # arrived after frame 21: flagged, placed where it belongs
        assert got.lost_before == (sizes[20] if k == 21 else 0)
    end = sum(sizes)
    reset = polar.EcgFrame(stream[0][1].timestamp_ns - 60 * 10**9, np.zeros(73, dtype=np.int32))
    got = idx.feed(reset)
    assert (got.first_index, got.lost_before, got.duplicate, got.restart) == (end, 0, False, True)
    nxt = polar.EcgFrame(reset.timestamp_ns + round(73 * idx.period_ns), np.zeros(73, dtype=np.int32))
    assert idx.feed(nxt).first_index == end + 73


# --- Heart Rate Service -------------------------------------------------------------------------

def test_hrs_facts_example() -> None:
    hr = hrs.decode_heart_rate(bytes.fromhex("10485503"))
    assert (hr.bpm, hr.contact, hr.energy_kj, hr.rr_1024) == (72, None, None, (853,))
    assert hr.rr_s == (853 / 1024,)
    assert hrs.encode_heart_rate(72, [853]) == bytes.fromhex("10485503")
    assert hrs.HEART_RATE_SERVICE == str(uuid.UUID("0000180d-0000-1000-8000-00805f9b34fb"))
    assert hrs.HEART_RATE_MEASUREMENT == "00002a37-0000-1000-8000-00805f9b34fb"


@pytest.mark.parametrize("uint16", [False, True])
@pytest.mark.parametrize("contact", [None, False, True])
@pytest.mark.parametrize("energy", [None, 0, 4321])
@pytest.mark.parametrize("rr", [(), (853,), (0, 1024, 65535)])
def test_hrs_every_flag_combination_round_trips(uint16: bool, contact: bool | None, energy: int | None,
                                                rr: tuple[int, ...]) -> None:
    bpm = 300 if uint16 else 72
    data = hrs.encode_heart_rate(bpm, rr, contact=contact, energy=energy, uint16=uint16)
    flags = (1 if uint16 else 0) | {None: 0, False: 4, True: 6}[contact] | (8 if energy is not None else 0) \
        | (16 if rr else 0)
    assert data[0] == flags and len(data) == 1 + (2 if uint16 else 1) + (2 if energy is not None else 0) + 2 * len(rr)
    hr = hrs.decode_heart_rate(data)
    assert (hr.bpm, hr.contact, hr.energy_kj, hr.rr_1024) == (bpm, contact, energy, rr)


@pytest.mark.parametrize("data, match", [
    (b"", "flags: expected 1 byte"), (b"\x01\x48", "heart rate: expected uint16"),
    (b"\x08\x48\x01", "energy expended"), (b"\x10\x48\x55", "rr intervals: expected uint16"),
    (b"\x00\x48\x00", "length: expected 2 bytes"),
])
def test_hrs_malformed_values_raise_profile_error(data: bytes, match: str) -> None:
    with pytest.raises(ProfileError, match=match):
        hrs.decode_heart_rate(data)
    with pytest.raises(ProfileError, match="bpm"):
        hrs.encode_heart_rate(256)


# --- open profile: fixed layouts ----------------------------------------------------------------

def test_open_profile_uuids_leads_and_packet_budget() -> None:
    uuids = [op.OPEN_SERVICE, op.OPEN_DATA, op.OPEN_CONTROL, op.OPEN_INFO]
    assert len(set(uuids)) == 4 and all(str(uuid.UUID(u)) == u for u in uuids)
    assert set(op.LEAD_CODES.values()) <= set(KNOWN_LEADS) and len(set(op.LEAD_CODES.values())) == 16
    assert op.HEADER_SIZE == 25
    assert op.max_samples_per_packet(247, "int16") == 109 and op.max_samples_per_packet(247, "int24") == 73
    assert op.max_samples_per_packet(op.MIN_MTU, "int24") == 16
    doc = (REPO / "docs" / "ble-profile.md").read_text(encoding="utf-8")
    for mtu in (23, 76, 185, 247, 517):  # the spec's MTU table is what the code computes
        row = f"| {mtu} | {op.max_samples_per_packet(mtu, 'int16')} | {op.max_samples_per_packet(mtu, 'int24')} |"
        assert row in doc.replace("**", ""), row


@pytest.mark.parametrize("fs, fmt, gain, n", [(250, "int16", 200.0, 109), (500, "int24", 20000.0, 73)])
def test_open_packet_round_trip_reconstructs_mv_within_one_count(fs: int, fmt: str, gain: float, n: int) -> None:
    t = np.arange(n) / fs
    mv = 1.2 * np.sin(2 * np.pi * 1.1 * t) + 0.3 * np.cos(2 * np.pi * 17 * t) - 0.05
    counts = op.quantize_mv(mv, gain, fmt)
    data = op.encode_packet(counts, seq=5, first_sample_index=n * 5, timestamp_us=123_456_789, fs_hz=fs,
                            gain=gain, fmt=fmt, lead="CHEST", flags=op.FLAG_LEAD_OFF)
    assert len(data) <= 247 - 3 and len(data) == op.HEADER_SIZE + n * op.FORMATS[fmt]
    pkt = op.decode_packet(data)
    assert (pkt.fmt, pkt.fs_hz, pkt.gain, pkt.lead, pkt.seq, pkt.first_sample_index) == (fmt, fs, gain, "CHEST",
                                                                                      5, n * 5)
    assert pkt.lead_off and not pkt.saturated and not pkt.stream_start and pkt.timestamp_us == 123_456_789
    np.testing.assert_array_equal(pkt.samples, counts)
    assert np.max(np.abs(pkt.samples_mv - mv)) <= 0.5 / gain + 1e-12


def _doc_example(name: str) -> bytes:
    text = (REPO / "docs" / "ble-profile.md").read_text(encoding="utf-8")
    m = re.search(rf"<!-- example-{name} -->\s*```text\n(.*?)```", text, re.S)
    assert m, f"docs/ble-profile.md has no example-{name} block"
    return bytes.fromhex(m.group(1))


def test_spec_examples_are_what_the_code_encodes() -> None:
    a = op.encode_packet([0, 12, 25, 40, 180, 950, -230, -60, 5, 0], seq=0, first_sample_index=0,
                         timestamp_us=5_000_000, fs_hz=250, gain=1000.0, fmt="int16", lead="CHEST",
                         flags=op.FLAG_STREAM_START)
    counts = op.quantize_mv([0.0, 0.5, 1.25, -0.3, -1.0, 0.012], 20000.0, "int24")
    b = op.encode_packet(counts, seq=65535, first_sample_index=4294967290, timestamp_us=1_767_225_600_000_000,
                         fs_hz=500, gain=20000.0, fmt="int24", lead="II", flags=op.FLAG_TIME_UNIX)
    info = op.encode_config(op.OpenConfig(250, "int16", 1000.0, "CHEST", 109, "1.0.0"))
    assert _doc_example("int16") == a and _doc_example("int24") == b and _doc_example("info") == info
    assert _doc_example("configure") == op.encode_configure(500, "int24")
    assert _doc_example("response") == op.encode_control_response(op.OP_START, op.OpenResult.SUCCESS)


def test_open_control_point_and_info() -> None:
    assert op.decode_command(op.START) == op.OpenCommand(op.OP_START)
    assert op.decode_command(op.STOP) == op.OpenCommand(op.OP_STOP)
    assert op.decode_command(op.encode_configure(500, "int24")) == op.OpenCommand(3, 500, "int24")
    for data, code in [(b"", 1), (b"\x07", 1), (b"\x01\x00", 2), (b"\x03\xf4\x01", 2), (b"\x03\x00\x00\x02", 3)]:
        with pytest.raises(op.OpenCommandError) as info:
            op.decode_command(data)
        assert info.value.code == code
    resp = op.decode_control_response(op.encode_control_response(op.OP_START, op.OpenResult.MTU_TOO_SMALL))
    assert (resp.op, resp.result, resp.result_name, resp.ok) == (1, 7, "MTU_TOO_SMALL", False)
    assert op.decode_control_response(b"\x80\x02\x00\xff").result_name == "SUCCESS"
    assert op.decode_control_response(b"\x80\x02\x63").result_name == "RESULT_99"
    cfg = op.OpenConfig(500, "int24", 20971.52, "II", 73, "fw 2.3.1-β")
    back = op.decode_config(op.encode_config(cfg))
    assert back.gain == pytest.approx(20971.52, rel=1e-7) and back.firmware == "fw 2.3.1-β" and back.version == 1
    assert back == cfg and op.OpenConfig(250.0, "int16", 1000, "CHEST", 109).fs_hz == 250
    for bad, match in [(dict(lead="XYZ"), "lead"), (dict(gain=-1.0), "gain"), (dict(fs_hz=130.5), "fs_hz"),
                       (dict(fmt="int32"), "format"), (dict(firmware="x" * 33), "firmware")]:
        with pytest.raises(ProfileError, match=f"open profile info: {match}"):
            op.OpenConfig(**{**dict(fs_hz=250, fmt="int16", gain=1.0, lead="I", samples_per_packet=10), **bad})


@pytest.mark.parametrize("mutate, match", [
    (lambda b: b[:24], "length: expected >= 25 bytes"), (lambda b: b"\x02" + b[1:], "version: expected 1"),
    (lambda b: b[:1] + b"\x04" + b[2:], "format: expected 2"), (lambda b: b[:3] + b"\x00" + b[4:], "lead code"),
    (lambda b: b[:-1], "sample count"), (lambda b: b[:16] + b"\x00\x00\xc0\x7f" + b[20:], "gain"),
    (lambda b: b[:22] + b"\x00\x00" + b[24:], "fs_hz"),
])
def test_open_packet_refusals_name_the_field(mutate, match: str) -> None:
    good = op.encode_packet([1, -1, 300], seq=1, first_sample_index=3, timestamp_us=0, fs_hz=250, gain=100.0)
    with pytest.raises(ProfileError, match=f"open profile packet: {match}"):
        op.decode_packet(mutate(good))


# --- open profile: sample indexing ---------------------------------------------------------------

def _packets(sizes: list[int], start_index: int = 0, start_seq: int = 0, flags0: int = op.FLAG_STREAM_START,
             t0: int = 0) -> list[op.OpenPacket]:
    out, index = [], start_index
    for k, n in enumerate(sizes):
        out.append(op.OpenPacket(1, "int16", flags0 if k == 0 else 0, "CHEST", index % (1 << 32),
                                 t0 + index * 4000, 1000.0, (start_seq + k) % (1 << 16), 250,
                                 np.zeros(n, dtype=np.int32)))
        index += n
    return out


def test_open_indexer_drops_duplicates_reordering_and_wraparound() -> None:
    sizes = [int(s) for s in np.random.default_rng(4).integers(1, 110, 3000)]  # crosses seq 65535 -> 0
    start = (1 << 32) - 50_000  # the uint32 index wraps within the stream
    pkts = _packets(sizes, start_index=start, start_seq=65_000, flags0=0)
    firsts = start + np.concatenate([[0], np.cumsum(sizes)[:-1]])
    idx, prev_end = op.OpenSampleIndexer(), None
    for k, pkt in enumerate(pkts):
        if k % 11 == 3:
            continue  # lost in the air
        arrival = [pkts[k]] if k % 13 else [pkts[k], pkts[k]]  # every 13th notification doubled
        for j, p in enumerate(arrival):
            got = idx.feed(p)
            assert got.first_index == firsts[k] and got.duplicate == (j == 1) and got.period_ns == 4e6
            if j == 0:
                assert got.lost_before == (0 if prev_end is None else firsts[k] - prev_end)
                prev_end = got.end_index
    assert prev_end == start + sum(sizes) > 1 << 32
    assert idx.lost == sum(sizes[k] for k in range(3000) if k % 11 == 3)
    assert idx.lost_packets == len(range(3, 3000, 11)) and idx.restarts == 0
    late = idx.feed(pkts[100])  # a reordered packet arriving long after: placed, flagged
    assert late.duplicate and late.first_index == firsts[100]


def test_open_indexer_restart_continues_the_count() -> None:
    idx = op.OpenSampleIndexer()
    first = _packets([50, 50, 50], t0=5_000_000)
    assert [idx.feed(p).first_index for p in first] == [0, 50, 100]
    assert idx.feed(first[0]).duplicate  # a repeat of the stream's first packet is no restart
    again = _packets([40, 40], t0=15_000_000)  # stopped and started again 10 s later: 2350 samples unsent
    got = [idx.feed(p) for p in again]
    assert [(g.first_index, g.restart, g.lost_before) for g in got] == [(2500, True, 2350), (2540, False, 0)]
    assert idx.restarts == 1 and idx.lost == 2350
    rebooted = _packets([40], t0=0)  # the device clock went back (a reboot): loss unknown, count continues
    assert [(g.first_index, g.restart, g.lost_before) for g in map(idx.feed, rebooted)] == [(2580, True, 0)]


def test_open_indexer_counts_a_reconnect_outage_from_device_timestamps() -> None:
    """A device restarts its index at START after a reconnect; its clock keeps running: the samples it
    measured meanwhile (2 s at 250 Hz) are lost, placed exactly, never spliced."""
    idx = op.OpenSampleIndexer()
    before = _packets([100, 100, 100], t0=1_000_000)  # index 0..299, 4 ms per sample
    assert [idx.feed(p).first_index for p in before] == [0, 100, 200]
    after = _packets([100, 100], t0=1_000_000 + (300 + 500) * 4000)  # index 0 again, 500 samples later
    got = [idx.feed(p) for p in after]
    assert [(g.first_index, g.restart, g.lost_before) for g in got] == [(800, True, 500), (900, False, 0)]
    assert idx.restarts == 1 and idx.lost == 500


@pytest.mark.parametrize("field, value, match", [
    ("fs_hz", 500, "fs_hz: expected 250 .*, got 500"), ("lead", "II", "lead: expected CHEST .*, got II"),
    ("fmt", "int24", "format: expected int16 .*, got int24"), ("gain", 2000.0, "gain: expected 1000 .*, got 2000"),
])
def test_open_indexer_rejects_a_packet_that_changes_the_stream(field: str, value, match: str) -> None:
    """Rate, lead, format and gain are the stream's (info characteristic or first packet): a packet
    that differs is refused (StreamChangeError), not relabelled, and indexing is unaffected."""
    idx = op.OpenSampleIndexer()
    idx.expect(op.OpenConfig(250, "int16", 1000.0, "CHEST", 109))
    pkts = _packets([50, 50, 50])
    idx.feed(pkts[0])
    odd = op.OpenPacket(**{**pkts[1].__dict__, field: value})
    with pytest.raises(op.StreamChangeError, match=f"open profile packet: {match}"):
        idx.feed(odd)
    got = idx.feed(pkts[2])
    assert (got.first_index, got.lost_before, idx.lost) == (100, 50, 50)


def test_implausible_gains_are_refused() -> None:
    """A subnormal (or absurd) gain would scale counts to 1e49 mV: refused like any malformed field."""
    good = op.encode_packet([1000, -1000, 300], seq=1, first_sample_index=3, timestamp_us=0, fs_hz=250, gain=100.0)
    for gain in (1e-45, 1e-30, 1e-3, 1e9):
        bad = good[:16] + np.float32(gain).tobytes() + good[20:]
        with pytest.raises(ProfileError, match="open profile packet: gain: expected a float32 within"):
            op.decode_packet(bad)


def test_open_indexer_refuses_an_index_its_timestamp_contradicts() -> None:
    """One flipped bit in a packet's index or timestamp: the two disagree, so the packet is refused as
    malformed (ImplausibleFrameError) instead of opening a 76-hour gap; the next packet is unharmed."""
    pkts = _packets([100] * 6)
    flipped_t = op.OpenPacket(**{**pkts[2].__dict__, "timestamp_us": pkts[2].timestamp_us ^ (1 << 38)})
    flipped_i = op.OpenPacket(**{**pkts[4].__dict__, "first_sample_index": pkts[4].first_sample_index ^ (1 << 30)})
    idx = op.OpenSampleIndexer()
    idx.feed(pkts[0]), idx.feed(pkts[1])
    for bad, good in ((flipped_t, pkts[3]), (flipped_i, pkts[5])):
        with pytest.raises(polar.ImplausibleFrameError, match="open profile packet: timestamp"):
            idx.feed(bad)
        got = idx.feed(good)
        assert got.lost_before == 100 and not got.duplicate
    assert idx.lost == 200 and got.end_index == 600


def test_polar_indexer_refuses_a_flipped_timestamp_bit() -> None:
    """A frame whose timestamp leaps 78 h ahead of what the host clock allows (one flipped bit) is
    refused (ImplausibleFrameError), not a 36.6 M-sample gap; real gaps within the host time pass."""
    frames = [f for _, f in _h10_stream(20)]
    idx = polar.PolarSampleIndexer()
    host = [k * 73 / 130.3 + 0.03 for k in range(20)]  # arrival times, s (real time)
    for k in range(5):
        idx.feed(frames[k], host[k])
    bad = polar.EcgFrame(frames[5].timestamp_ns ^ (1 << 48), frames[5].samples_uv)
    with pytest.raises(polar.ImplausibleFrameError, match="polar pmd ecg frame: timestamp"):
        idx.feed(bad, host[5])
    assert idx.feed(frames[6], host[6]).lost_before == 73
    assert idx.feed(frames[9], host[9]).lost_before == 2 * 73  # a real gap: the host clock moved as much
    assert idx.lost == 3 * 73


# --- hypothesis: fuzzing decoders and round-tripping encoders ------------------------------------

@st.composite
def int_samples(draw, bits: int, max_n: int = 120) -> np.ndarray:
    n = draw(st.integers(1, max_n))
    raw = draw(st.binary(min_size=4 * n, max_size=4 * n))
    return np.frombuffer(raw, dtype="<i4") >> (32 - bits)


@st.composite
def open_packet_kwargs(draw) -> dict:
    fmt = draw(st.sampled_from(sorted(op.FORMATS)))
    return dict(samples=draw(int_samples(8 * op.FORMATS[fmt], 255)), fmt=fmt,
                seq=draw(st.integers(0, 0xFFFF)), first_sample_index=draw(st.integers(0, 0xFFFFFFFF)),
                timestamp_us=draw(st.integers(0, 2**64 - 1)), fs_hz=draw(st.integers(1, 0xFFFF)),
                gain=float(np.float32(draw(st.floats(*op.GAIN_RANGE)))),
                lead=draw(st.sampled_from(list(op.LEAD_CODES.values()))),
                flags=draw(st.integers(0, 255)))


def ecg_frames():
    return st.builds(polar.encode_ecg_frame, st.integers(0, 2**64 - 1), int_samples(24, 80))


def valid_messages():
    """(the decoder that must accept it, a valid encoded message) for every message kind."""
    settings_st = st.dictionaries(st.sampled_from(["sample_rate", "resolution", "range", "channels"]),
                                  st.integers(0, 255))
    byte = st.integers(0, 255)
    kinds = {
        polar.decode_ecg_frame: ecg_frames(),
        polar.decode_control_request: st.one_of(
            st.builds(polar.encode_control_request, st.sampled_from([1, 3]), byte),
            st.builds(polar.encode_control_request, st.just(2), byte, settings_st)),
        polar.decode_control_response: st.builds(polar.encode_control_response, byte, byte, byte, st.booleans(),
                                                  st.binary(max_size=20)),
        polar.decode_features: st.builds(polar.encode_features,
                                         st.sets(st.sampled_from(sorted(polar.MEASUREMENT_TYPES)))),
        hrs.decode_heart_rate: st.builds(
            lambda u, bpm, rr, c, e: hrs.encode_heart_rate(bpm if u else bpm % 256, rr, c, e, u),
            st.booleans(), st.integers(0, 0xFFFF), st.lists(st.integers(0, 0xFFFF), max_size=9),
            st.none() | st.booleans(), st.none() | st.integers(0, 0xFFFF)),
        op.decode_packet: open_packet_kwargs().map(lambda kw: op.encode_packet(**kw)),
        op.decode_config: st.builds(op.OpenConfig, st.integers(1, 0xFFFF), st.sampled_from(sorted(op.FORMATS)),
                                    st.floats(*op.GAIN_RANGE), st.sampled_from(list(op.LEAD_CODES.values())),
                                    st.integers(1, 255), st.text(max_size=8)).map(op.encode_config),
        op.decode_command: st.one_of(st.just(op.START), st.just(op.STOP), st.builds(
            op.encode_configure, st.integers(1, 0xFFFF), st.sampled_from(sorted(op.FORMATS)))),
        op.decode_control_response: st.builds(op.encode_control_response, byte, byte),
    }
    return st.one_of([strat.map(lambda b, d=decode: (d, b)) for decode, strat in kinds.items()])


@st.composite
def mutated(draw, valid) -> bytes:
    """A valid message with a few bytes flipped, dropped, inserted or cut off."""
    b = bytearray(draw(valid)[1])
    for kind, pos, val in draw(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 300), st.integers(0, 255)),
                                        max_size=3)):
        pos = pos % (len(b) + 1)
        if kind == 0 and pos < len(b):
            b[pos] = val
        elif kind == 1:
            del b[pos:pos + 1 + val % 4]
        elif kind == 2:
            b[pos:pos] = bytes([val])
        else:
            del b[pos:]
    return bytes(b)


def _decoded_or_profile_error(decode, data: bytes):
    try:
        return decode(data)
    except ProfileError as e:
        assert str(e) and "\n" not in str(e)
        return None


def _check_all_decoders(data: bytes) -> None:
    """Every decoder returns a valid object (re-encoding to the same bytes where the format is
    canonical) or raises ProfileError; anything else fails the test."""
    if (f := _decoded_or_profile_error(polar.decode_ecg_frame, data)) is not None:
        assert f.samples_uv.dtype == np.int32 and f.n >= 1
        assert polar.encode_ecg_frame(f.timestamp_ns, f.samples_uv) == data
    if (s := _decoded_or_profile_error(polar.decode_features, data)) is not None:
        assert s <= set(polar.MEASUREMENT_TYPES)
    if (r := _decoded_or_profile_error(polar.decode_control_request, data)) is not None:
        assert polar.encode_control_request(r.op, r.measurement_type, r.settings) == data
    if (c := _decoded_or_profile_error(polar.decode_control_response, data)) is not None:
        assert c.error_name == polar.error_name(c.error) and c.params == data[5:]
    if (h := _decoded_or_profile_error(hrs.decode_heart_rate, data)) is not None:
        assert hrs.decode_heart_rate(hrs.encode_heart_rate(h.bpm, h.rr_1024, h.contact, h.energy_kj,
                                                           bool(data[0] & 1))) == h
    if (p := _decoded_or_profile_error(op.decode_packet, data)) is not None:
        assert op.encode_packet(p.samples, seq=p.seq, first_sample_index=p.first_sample_index,
                                timestamp_us=p.timestamp_us, fs_hz=p.fs_hz, gain=p.gain, fmt=p.fmt,
                                lead=p.lead, flags=p.flags) == data
        assert np.all(np.isfinite(p.samples_mv))
    if (g := _decoded_or_profile_error(op.decode_config, data)) is not None:
        assert op.encode_config(g) == data
    if (m := _decoded_or_profile_error(op.decode_command, data)) is not None:
        assert (op.encode_configure(m.fs_hz, m.fmt) if m.op == op.OP_CONFIGURE else bytes([m.op])) == data
    if (o := _decoded_or_profile_error(op.decode_control_response, data)) is not None:
        assert o.result_name == op.result_name(o.result)


@FUZZ
@given(st.binary(max_size=300))
def test_fuzz_every_decoder_on_arbitrary_bytes(data: bytes) -> None:
    _check_all_decoders(data)


@pytest.mark.slow
@FUZZ
@given(mutated(valid_messages()))
def test_fuzz_every_decoder_on_mutated_valid_messages(data: bytes) -> None:
    _check_all_decoders(data)


@pytest.mark.slow
@FUZZ
@given(valid_messages())
def test_every_valid_message_decodes_and_re_encodes_to_the_same_bytes(message) -> None:
    decode, data = message
    decode(data)  # its own decoder must accept it (a ProfileError here fails the test)
    _check_all_decoders(data)


@pytest.mark.slow
@FUZZ
@given(st.integers(0, 2**64 - 1), int_samples(24, 80))
def test_round_trip_polar_ecg(ts: int, samples: np.ndarray) -> None:
    frame = polar.decode_ecg_frame(polar.encode_ecg_frame(ts, samples))
    assert frame.timestamp_ns == ts and np.array_equal(frame.samples_uv, samples)


@pytest.mark.slow
@FUZZ
@given(st.booleans(), st.integers(0, 0xFFFF), st.lists(st.integers(0, 0xFFFF), max_size=9),
       st.none() | st.booleans(), st.none() | st.integers(0, 0xFFFF))
def test_round_trip_heart_rate(u16: bool, bpm: int, rr: list[int], contact: bool | None, energy: int | None) -> None:
    bpm = bpm if u16 else bpm % 256
    hr = hrs.decode_heart_rate(hrs.encode_heart_rate(bpm, rr, contact, energy, u16))
    assert (hr.bpm, hr.rr_1024, hr.contact, hr.energy_kj) == (bpm, tuple(rr), contact, energy)


@pytest.mark.slow
@FUZZ
@given(open_packet_kwargs())
def test_round_trip_open_packet(kw: dict) -> None:
    p = op.decode_packet(op.encode_packet(**kw))
    assert (p.seq, p.first_sample_index, p.timestamp_us, p.fs_hz, p.gain, p.fmt, p.lead, p.flags) == (
        kw["seq"], kw["first_sample_index"], kw["timestamp_us"], kw["fs_hz"], kw["gain"], kw["fmt"], kw["lead"],
        kw["flags"])
    assert np.array_equal(p.samples, kw["samples"]) and np.array_equal(p.samples_mv, kw["samples"] / kw["gain"])


@settings(max_examples=1000, deadline=None, derandomize=True, database=None)
@given(st.lists(st.tuples(st.integers(1, 120), st.booleans(), st.booleans()), min_size=1, max_size=60),
       st.integers(0, 0xFFFFFFFF), st.integers(0, 0xFFFF))
def test_open_indexer_property(plan: list[tuple[int, bool, bool]], start: int, seq0: int) -> None:
    """Whatever is lost or doubled, every packet lands on its true unwrapped index."""
    pkts = _packets([n for n, _, _ in plan], start_index=start, start_seq=seq0, flags0=0)
    idx, true_first, pending, lost = op.OpenSampleIndexer(), start, 0, 0
    for k, ((n, drop, dup), pkt) in enumerate(zip(plan, pkts)):
        if drop and k > 0:
            pending += n  # counted once a later packet shows the gap
        else:
            for j in range(2 if dup else 1):
                got = idx.feed(pkt)
                assert (got.first_index, got.duplicate) == (true_first, j == 1)
                assert got.lost_before == (0 if j else pending)
            lost, pending = lost + pending, 0
        true_first += n
    assert idx.lost == lost
