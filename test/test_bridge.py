"""The node's ROS-free half (semnerf_ros.bridge), unit by unit, without DDS: stamp gate, intake
queue, reject ledger, messages to a frame, input diagnostics, status, markers, map operations,
engine set-up and the typed mapper interface."""
from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

from semnerf_ros.bridge import convert, diagnostics
from semnerf_ros.bridge.engine_setup import CPU_ENGINE_FILE, engine_profile
from semnerf_ros.bridge.frames import InputRules, frame_from_messages
from semnerf_ros.bridge.intake import STAMP_REBASE_SETS, FrameIntake, StampGate
from semnerf_ros.bridge.ledger import InputLedger, Rejected
from semnerf_ros.bridge.map_ops import MapOperations
from semnerf_ros.bridge.mapper_api import MapperAPI
from semnerf_ros.bridge.markers import mesh_marker_array
from semnerf_ros.bridge.outputs import FRESH_WAIT_S, RENDER_POLL_S, PolledLoop, RenderPacer
from semnerf_ros.bridge.params import PARAMS, ParameterValueError
from semnerf_ros.bridge.status import EngineFaults, fill_status, progress_line
from semnerf_ros.engine.frame import Frame, FrameError
from semnerf_ros.engine.geometry import Intrinsics, PoseError
from semnerf_ros.engine.mapper import Mapper
from semnerf_ros.engine.mesh import ExtractionCancelled, SemanticMesh

W, H = 32, 24
INTR = Intrinsics.from_hfov(W, H, 90.0)
TOPICS = ["rgb", "labels", "pose", "camera_info"]
SYNCED = ["rgb", "labels", "pose"]


def ledger(out=None):
    return InputLedger(TOPICS, (out if out is not None else []).append, 0.0)


# --------------------------------------------------------------------------- stamp gate
def test_stamp_gate_rules():
    g = StampGate()
    assert g.check(10.0, now=10.1) is None
    g.accept(10.0)
    with pytest.raises(Rejected) as e:
        g.check(10.0, now=10.1, topics=SYNCED)
    assert e.value.reason == "duplicate_stamp" and e.value.topics == SYNCED
    with pytest.raises(Rejected, match="older than the last frame") as e:
        g.check(9.0, now=10.1)
    assert e.value.reason == "out_of_order"
    with pytest.raises(Rejected) as e:
        g.check(11.0, now=20.0, max_stamp_age=5.0)
    assert e.value.reason == "stale_stamp" and "9.000 s old" in e.value.detail
    with pytest.raises(Rejected) as e:
        g.check(30.0, now=20.0, max_future=2.0)
    assert e.value.reason == "future_stamp"
    # a stream that went back: rejected until STAMP_REBASE_SETS sets in a row, then a new time base
    g = StampGate()
    g.accept(100.0)
    for i in range(STAMP_REBASE_SETS - 1):
        with pytest.raises(Rejected):
            g.check(1.0 + i, now=0.0)
    warning = g.check(50.0, now=0.0)
    assert f"{STAMP_REBASE_SETS} frames in a row" in warning and "new time base" in warning
    g.accept(50.0)
    assert g.back == 0 and g.last == 50.0


# --------------------------------------------------------------------------- ledger
def test_ledger_counts_by_reason_and_topic_and_throttles_warnings():
    out = []
    led = InputLedger(TOPICS, out.append, 60.0)
    for _ in range(3):
        led.reject("bad_image", ["rgb"], "rgb: step 3 too small")
    led.reject("invalid_camera_info", ["camera_info"], "fx 0", count_frame=False)
    led.rejected(Rejected("size_mismatch", ["labels"], "labels are 10x10"))
    led.accepted(keyframe=True)
    led.accepted(keyframe=False)
    assert led.reject_counts == {"bad_image": 3, "invalid_camera_info": 1, "size_mismatch": 1}
    assert led.rejected_by_topic == {"rgb": 3, "labels": 1, "pose": 0, "camera_info": 1}
    assert led.frames_rejected == 4 and led.frames_synced == 2 and led.keyframes_added == 1
    assert out == ["rejected (bad_image): rgb: step 3 too small", "rejected (invalid_camera_info): fx 0",
                   "rejected (size_mismatch): labels are 10x10"]


# --------------------------------------------------------------------------- intake
class SlowMapper:
    device = "cpu"

    def __init__(self, fail=None):
        self.frames, self.fail, self.gate = [], fail, threading.Event()

    def screen_frame(self, frame):
        return None  # every frame goes to add_frame

    def add_frame(self, frame):
        self.gate.wait(5)
        if self.fail is not None:
            raise self.fail
        self.frames.append(frame)
        return SimpleNamespace(keyframe=True)


def frame(stamp=0.0):
    return Frame(rgb=np.zeros((H, W, 3), np.uint8), pose=np.eye(4), intrinsics=INTR,
                 labels=np.ones((H, W), np.int32), stamp=stamp)


def wait(cond, timeout=5.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end and not cond():
        time.sleep(0.01)
    return cond()


def test_intake_drops_the_oldest_frame_when_the_mapper_is_busy():
    m, led = SlowMapper(), ledger()
    intake = FrameIntake(m, led, SYNCED, depth=2)
    try:
        for i in range(4):          # the first is taken by the thread (blocked), two wait, one is pushed out
            intake.put(frame(i))
            if i == 0:
                assert wait(lambda: not intake.queue)
        assert led.reject_counts == {"mapper_busy": 1} and led.rejected_by_topic["pose"] == 1
        m.gate.set()
        assert wait(lambda: led.frames_synced == 3)
        assert [f.stamp for f in m.frames] == [0, 2, 3] and led.keyframes_added == 3
    finally:
        intake.stop()
        intake.join()


class ScreeningMapper(SlowMapper):
    """Turns away every frame whose stamp is odd, as the keyframe policy would a revisit."""

    def screen_frame(self, frame):
        return "revisits keyframe 0" if int(frame.stamp) % 2 else None


def test_intake_never_queues_frames_the_keyframe_policy_turns_away():
    m, led = ScreeningMapper(), ledger()
    intake = FrameIntake(m, led, SYNCED, depth=2)
    try:
        intake.put(frame(0))
        assert wait(lambda: not intake.queue)       # taken by the (blocked) intake thread
        for i in range(1, 9):                        # 4 candidates (even), 4 turned away (odd)
            intake.put(frame(i))
        # without screening 8 frames would have overflowed a 2-deep queue; the 4 candidates
        # still do (2 wait, 2 pushed out), the turned-away ones never count against it
        assert led.reject_counts == {"mapper_busy": 2}
        assert led.frames_synced == 4 and led.keyframes_added == 0
        assert intake.depth() == {"intake_queue": 2, "intake_queue_peak": 2, "intake_capacity": 2}
        m.gate.set()
        assert wait(lambda: led.frames_synced == 7)
        assert [f.stamp for f in m.frames] == [0, 6, 8]
        assert intake.depth()["intake_queue"] == 0
    finally:
        intake.stop()
        intake.join()


@pytest.mark.parametrize("error, reason", [(PoseError, "invalid_pose"), (FrameError, "invalid_frame"),
                                           (RuntimeError, "mapper_error")])
def test_intake_counts_engine_refusals_by_reason(error, reason):
    # the exception is made here: a raised one keeps the intake's frame alive through its traceback
    m, led = SlowMapper(fail=error("refused")), ledger()
    m.gate.set()
    intake = FrameIntake(m, led, SYNCED)
    try:
        intake.put(frame())
        assert wait(lambda: led.reject_counts == {reason: 1})
        assert led.frames_synced == 0 and led.frames_rejected == 1
    finally:
        intake.stop()
        intake.join()
        m.fail = None   # its traceback holds the intake's frame: no garbage cycle left for later tests


# --------------------------------------------------------------------------- messages -> frame
def msgs(labels=None, world="map", rgb_size=(H, W), q=(0, 0, 0, 1)):
    lab = np.ones((H, W), np.uint8) if labels is None else labels
    hdr = convert.make_header(5.0, "cam")
    rgb = convert.numpy_to_image(np.zeros(rgb_size + (3,), np.uint8), "rgb8", hdr)
    pose = convert.pose_stamped_from_pose(np.eye(4), world, 5.0)
    pose.pose.orientation.x, pose.pose.orientation.y, pose.pose.orientation.z, pose.pose.orientation.w = q
    return rgb, convert.numpy_to_image(lab, "mono8", hdr), pose


RULES = InputRules(num_classes=4, world_frame="map")


def test_a_good_set_becomes_a_frame_with_its_stamp_and_camera():
    rgb, lab, pose = msgs()
    f = frame_from_messages(rgb, lab, pose, None, INTR, RULES, SYNCED)
    assert f.stamp == 5.0 and f.frame_id == "cam" and f.intrinsics == INTR and f.labels.dtype == np.int32
    big = INTR.resized(2 * W, 2 * H)                 # the same camera at another resolution is rescaled
    assert frame_from_messages(rgb, lab, pose, None, big, RULES, SYNCED).intrinsics == INTR


@pytest.mark.parametrize("case, reason, topics", [
    ("world", "pose_frame_mismatch", ["pose"]), ("quaternion", "invalid_pose", ["pose"]),
    ("labels", "label_out_of_range", ["labels"]), ("size", "size_mismatch", ["rgb"]),
    ("camera", "no_camera_info", ["rgb"]), ("aspect", "size_mismatch", ["rgb"])])
def test_a_bad_set_is_rejected_naming_the_reason_and_the_input(case, reason, topics):
    labels = np.full((H, W), 7, np.uint8) if case == "labels" else None
    rgb, lab, pose = msgs(labels=labels, world="odom" if case == "world" else "map",
                          rgb_size=(H // 2, W // 2) if case == "size" else (H, W),
                          q=(0, 0, 0, 2) if case == "quaternion" else (0, 0, 0, 1))
    intr = None if case == "camera" else (Intrinsics.from_hfov(W, W, 90.0) if case == "aspect" else INTR)
    with pytest.raises(Rejected) as e:
        frame_from_messages(rgb, lab, pose, None, intr, RULES, SYNCED)
    assert e.value.reason == reason and e.value.topics == topics, e.value


# --------------------------------------------------------------------------- diagnostics
def test_input_problems_name_silent_inputs_and_stamp_skew():
    led = ledger()
    names = {t: f"/cam/{t}" for t in TOPICS}
    led.last_sync_time -= 100.0
    pubs = {"rgb": 1, "labels": 0, "pose": 1, "camera_info": 1}
    led.arrived("rgb", 1.0)
    led.arrived("pose", 1.0)
    led.arrived("camera_info")
    quiet, problems = diagnostics.input_problems(TOPICS, SYNCED, names, led, 5.0, 0.02, "sensor_data", pubs.get)
    assert quiet >= 100.0
    assert problems == ["no publisher on /cam/labels (remap labels:=<your topic>)"]
    pubs["labels"] = 1
    led.arrived("labels", 1.5)
    _, problems = diagnostics.input_problems(TOPICS, SYNCED, names, led, 5.0, 0.02, "sensor_data", pubs.get)
    assert len(problems) == 1 and "differ by 0.500 s" in problems[0] and "/cam/labels +0.500 s" in problems[0]
    text = diagnostics.no_sync_summary(problems, 100.0, ever_synced=False)
    assert text.startswith("no frame synchronized 100 s after start: the inputs publish but never synchronize")
    led.synchronized()
    assert diagnostics.input_problems(TOPICS, SYNCED, names, led, 5.0, 0.02, "reliable", pubs.get)[1] == []


def test_sync_drop_reasons():
    names = {t: f"/{t}" for t in SYNCED}
    assert "same stamp" in diagnostics.sync_drop_reason("rgb", "duplicate_stamp", SYNCED, names, 0.02, [1, 1, 1],
                                                        lambda t: 1)
    why = diagnostics.sync_drop_reason("rgb", "queue_full", SYNCED, names, 0.02, [5, 0, 3], lambda t: 0)
    assert why == ("nothing is waiting on /labels (has it stopped?); no publisher on /labels "
                   "(remap labels:=<your topic>)")
    why = diagnostics.sync_drop_reason("rgb", "queue_full", SYNCED, names, 0.02, [5, 2, 3], lambda t: 1)
    assert why == "no partner within slop=0.02 s on the other inputs (/labels, /pose)"


# --------------------------------------------------------------------------- status
def test_status_message_fields_and_progress_line():
    warned, led = [], ledger()
    faults = EngineFaults(lambda key, text: warned.append(key))
    led.reject("bad_image", ["rgb"], "x")
    led.accepted(True)
    st = {"step": 12, "keyframes": 3, "max_keyframes": 9, "training": True, "device": "cpu", "loss": float("nan"),
          "psnr": 21.5, "iterations_per_second": 4.0, "oom_events": 2, "step_errors": 0,
          "timing_ms": {"step": {"p50": 9.6, "max": 30.2}}}
    counts = faults.check(st)
    assert counts == {"training_oom": 2} and warned == ["training_oom"]
    assert faults.check(st) == {"training_oom": 2} and warned == ["training_oom"]   # warned once per increase
    msg = fill_status(SimpleNamespace(), st, led, [0, 4, 0], SYNCED, {t: "/" + t for t in TOPICS}, counts, 5, "x")
    assert (msg.step, msg.keyframes, msg.max_keyframes, msg.loss, msg.psnr) == (12, 3, 9, 0.0, 21.5)
    assert msg.topics == ["/rgb", "/labels", "/pose", "/camera_info"] and msg.dropped == [1, 4, 0, 0]
    assert msg.reject_reasons == ["bad_image", "training_oom"] and msg.reject_counts == [1, 2]
    assert (msg.frames_synced, msg.frames_rejected, msg.keyframes_added) == (1, 1, 1)
    line = progress_line(st, led, True)
    assert line.startswith("step 12 (4 it/s), keyframes 3/9; messages received 0 per topic, frames synced 1, "
                           "rejected 1 (bad_image 1)"), line
    assert "step 10/30" in line and "label votes" not in line
    fused = dict(st, label_fusion={"voxels": 812, "votes": 9000}, timing_ms={"fuse": {"p50": 2.2, "max": 7.9}})
    assert progress_line(fused, led, True).endswith(", label votes 2/8 (812 voxels)")
    assert "paused" in progress_line(dict(st, training=False), led, False)
    assert progress_line(dict(st, gpu_memory_mb=1479.4), led, True).endswith("; gpu 1479 MB")   # on a GPU
    viewed = dict(st, timing_ms={"view": {"p50": 9.2, "max": 21.0}, "render": {"p50": 0.4, "max": 4.0}})
    assert "view 9/21 (map lock 0/4, wait -)" in progress_line(viewed, led, True)
    assert "gpu" not in line


# --------------------------------------------------------------------------- markers
def test_mesh_markers_cover_every_triangle_after_a_deleteall():
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32)
    f = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]], np.int32)
    mesh = SemanticMesh(v, f, np.full((4, 3), 255, np.uint8), np.array([1, 1, 2, 2], np.int32), ["void", "a", "b"])
    arr = mesh_marker_array(mesh, convert.make_header(1.0, "map"), max_triangles=3)
    assert arr.markers[0].action == arr.markers[0].DELETEALL
    tri = arr.markers[1:]
    assert [len(m.points) for m in tri] == [9, 3] and all(m.header.frame_id == "map" for m in tri)
    assert tri[0].colors[0].a == 1.0 and tri[0].colors[0].r == pytest.approx(mesh.palette[1][0] / 255.0)


def test_mesh_markers_as_serialized_bytes_read_back_as_the_message_objects():
    """bridge/marker_cdr.py writes the MarkerArray's bytes from the arrays: the same length as
    rclpy's serialization and, read back, the same message as the objects (chunks, decimation,
    rendered or semantic colours, stamps and frame ids of odd lengths, an empty mesh).  A wrong
    alignment or field order would not read back."""
    rclpy_serialization = pytest.importorskip("rclpy.serialization", reason="rclpy is not installed")
    from sensor_msgs.msg import CameraInfo
    from visualization_msgs.msg import Marker, MarkerArray, UVCoordinate

    from semnerf_ros.bridge import marker_cdr

    def same(raw, msg):
        back = rclpy_serialization.deserialize_message(raw, type(msg))
        return len(raw) == len(rclpy_serialization.serialize_message(msg)) and back == msg

    rng = np.random.default_rng(2)
    v = rng.random((60, 3), dtype=np.float32) * 4
    f = rng.integers(0, 60, (90, 3)).astype(np.int32)
    mesh = SemanticMesh(v, f, rng.integers(0, 255, (60, 3), dtype=np.uint8), rng.integers(1, 3, 60).astype(np.int32),
                        ["void", "a", "b"])
    for frame_id, tri, sem, faces in (("map", 40, True, None), ("odom_frame", 1000, False, None), ("m", 7, True, 30)):
        header = convert.make_header(12.25, frame_id)
        raw = marker_cdr.mesh_marker_array_cdr(mesh, header, tri, sem, faces)
        assert same(raw, mesh_marker_array(mesh, header, tri, sem, faces)), (frame_id, tri, sem, faces)
    empty = SemanticMesh(v[:0], f[:0], np.zeros((0, 3), np.uint8), np.zeros(0, np.int32), ["void"])
    raw = marker_cdr.mesh_marker_array_cdr(empty, convert.make_header(1.0, "map"))
    assert same(raw, mesh_marker_array(empty, convert.make_header(1.0, "map")))
    assert len(rclpy_serialization.deserialize_message(raw, MarkerArray).markers) == 1   # the DELETEALL alone
    # the generic writer, on every kind of field a message of these packages has
    m = Marker(ns="abc", text="hello", mesh_resource="package://x", frame_locked=True)
    m.texture.format, m.texture.data = "png", [1, 2, 3]
    m.mesh_file.filename, m.mesh_file.data = "f.obj", [4, 5]
    m.uv_coordinates = [UVCoordinate(u=0.5, v=0.25)]
    info = CameraInfo(k=[1.0] * 9, d=[0.1, 0.2], distortion_model="plumb_bob", width=3, height=2)
    assert same(marker_cdr.serialize(m), m) and same(marker_cdr.serialize(info), info)
    assert marker_cdr.self_check(rclpy_serialization.serialize_message, rclpy_serialization.deserialize_message) is None
    assert "differs" in marker_cdr.self_check(rclpy_serialization.serialize_message, lambda raw, t: t())


# --------------------------------------------------------------------------- map operations
class MeshMapper:
    device = "cpu"

    def __init__(self, keyframes=1):
        self.keyframes, self.calls = keyframes, []

    def stats(self):
        return {"keyframes": self.keyframes}

    def extract_mesh(self, resolution=256, density_threshold=None, cancel=None, chunk=None, observed_only=False):
        self.calls.append((resolution, density_threshold, chunk))
        if cancel is not None and cancel():
            raise ExtractionCancelled("cancelled")
        v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32)
        return SemanticMesh(v, np.array([[0, 1, 2]], np.int32), np.zeros((3, 3), np.uint8), np.ones(3, np.int32))

    def load_state(self, path):
        raise FileNotFoundError(path)


def values(**kw):
    return {**{p.name: p.default for p in PARAMS}, **kw}


def test_map_operations_export_checks_first_and_cancels(tmp_path):
    m = MeshMapper()
    ops = MapOperations(m, values(mesh_resolution=16), lambda text: None)
    path, nv, nf = ops.export_mesh(str(tmp_path / "m.ply"))
    assert (nv, nf) == (3, 1) and (tmp_path / "m.ply").is_file() and m.calls == [(16, None, 32768)]
    with pytest.raises(OSError, match="does not exist"):
        ops.export_mesh(str(tmp_path / "missing" / "m.ply"))      # refused before any extraction
    assert len(m.calls) == 1
    ops.cancel.set()
    with pytest.raises(ExtractionCancelled):
        ops.export_mesh(str(tmp_path / "n.ply"))
    assert not (tmp_path / "n.ply").exists() and ops.running_work() == []
    with pytest.raises(RuntimeError, match="no keyframes"):
        MapOperations(MeshMapper(0), values(), print).export_mesh(str(tmp_path / "e.ply"))
    with pytest.raises(ParameterValueError, match="load_on_start"):
        MapOperations(m, values(map_path=str(tmp_path / "none.pt")), print).load_at_start()


def test_shutdown_lines_say_what_is_cancelled_and_what_is_waited_for():
    assert MapOperations.shutdown_lines("SIGINT", []) == [("info", "SIGINT: shutting down")]
    lines = MapOperations.shutdown_lines("SIGTERM", [("export_mesh", "/x.ply", 2.0), ("save_map", "/m.pt", 1.0)])
    assert lines[0][0] == "warning" and "cancelling export_mesh" in lines[0][1] and "nothing will be written" \
        in lines[0][1]
    assert "waiting for save_map /m.pt" in lines[1][1]


# --------------------------------------------------------------------------- engine set-up and interface
def test_engine_profile_on_a_cpu_takes_the_cpu_file():
    path, why = engine_profile(values(device="cpu"))
    assert path.endswith(CPU_ENGINE_FILE) and "CPU profile" in why
    with pytest.raises(ParameterValueError, match="engine_config"):
        engine_profile(values(engine_config="no_such_engine.yaml"))
    assert engine_profile(values(device="cpu", model_type="nerf"))[0] is None


def test_the_mapper_satisfies_the_interface_the_node_uses():
    assert isinstance(Mapper({"model": {"type": "hash"}}, 3, device="cpu"), MapperAPI)
    assert not isinstance(object(), MapperAPI)


def test_polled_loop_runs_its_work_on_its_own_thread_survives_errors_and_stops():
    """The published renders' poll: ``work`` every period on a thread of its own; an exception goes
    to ``on_error`` and the loop goes on; ``stop`` waits for a ``work`` in progress and ends it."""
    _time = time
    calls, errors, threads, started = [], [], set(), threading.Event()

    def work():
        threads.add(threading.current_thread().name)
        calls.append(_time.monotonic())
        started.set()
        if len(calls) == 2:
            raise RuntimeError("render failed")
        _time.sleep(0.02)

    loop = PolledLoop(work, lambda: 0.005, "test-poll", errors.append).start()
    assert started.wait(2.0)
    deadline = _time.monotonic() + 2.0
    while len(calls) < 6 and _time.monotonic() < deadline:
        _time.sleep(0.01)
    assert loop.running and loop.stop(timeout=2.0) and not loop.running
    n = len(calls)
    _time.sleep(0.05)
    assert len(calls) == n >= 6                       # nothing after stop
    assert [str(e) for e in errors] == ["render failed"] and threads == {"test-poll"}
    own = []
    loop2 = PolledLoop(lambda: own.append(loop2.stop()), lambda: 0.001, "self-stop", errors.append)
    loop2.start()
    deadline = _time.monotonic() + 2.0
    while loop2.running and _time.monotonic() < deadline:
        _time.sleep(0.005)
    assert own == [True] and not loop2.running         # stop from its own work returns at once


def test_renders_start_within_a_poll_of_a_new_input_and_never_above_the_rate():
    """The render timer polls every 10 ms (or faster for a rate above 100 Hz); renders start on
    slots 1/rate apart.  Simulated at 10 Hz publishing: a 6 Hz camera's every frame is rendered
    within a poll of its arrival (a 10 Hz timer: up to 100 ms later); a 30 Hz camera's frames are
    rendered at 10 Hz, each within a poll of its arrival (a due slot waits for a fresh frame instead
    of taking one up to 33 ms old); a stream that stops still gets its last frame rendered."""
    assert RenderPacer.poll_period(10.0) == RENDER_POLL_S == 0.01 and RenderPacer.poll_period(200.0) == 0.005

    def simulate(camera_hz, seconds=3.0, fresh=True):
        pacer, period = RenderPacer(), RenderPacer.poll_period(10.0)
        jitter = np.random.default_rng(1).uniform(-0.003, 0.003, int(seconds * camera_hz))   # DDS, driver
        arrivals = sorted(0.0123 + i / camera_hz + j for i, j in enumerate(jitter))
        starts, waits, seen = [], [], None
        for k in range(int((seconds + 0.3) / period)):
            now = k * period + 0.0003                  # timer ticks, a little late
            newest = max((a for a in arrivals if a <= now), default=None)
            if newest is None or newest == seen or not pacer.due(now, 10.0, now - newest if fresh else None):
                continue
            pacer.started(now, 10.0)
            starts.append(now)
            waits.append(now - newest)
            seen = newest
        return pacer, np.array(starts), np.array(waits), period, arrivals

    def most_in_one_second(starts):
        return max(int(np.sum((starts >= t) & (starts < t + 1.0 - 1e-6))) for t in starts)

    pacer, starts, waits, period, _ = simulate(6.0)
    assert len(starts) == 18 and waits.max() <= period + 1e-3
    pacer, starts, waits, period, _ = simulate(29.97, seconds=10.0)  # a camera's clock is not the node's
    # 10 a second on the slots' grid (a render waiting for a fresh frame starts late, the next on time)
    assert 99 <= len(starts) <= 101 and most_in_one_second(starts) <= 11
    # each image from a frame at most a poll old (the last: the stream's end, rendered FRESH_WAIT_S late)
    assert waits[:-1].max() <= period + RenderPacer.TOLERANCE_S
    _, _, stale, _, _ = simulate(29.97, seconds=10.0, fresh=False)   # the slot takes the newest frame
    assert stale[:-1].mean() > 2 * waits[:-1].mean()             # about 17 ms old on average, not 5
    pacer.forget()
    assert pacer.due(starts[-1] + 0.001, 10.0)
    # the stream stops: its last frame is rendered within a slot and FRESH_WAIT_S of arriving
    _, starts, _, _, arrivals = simulate(30.0, seconds=1.0)
    assert starts[-1] - arrivals[-1] <= 0.1 + FRESH_WAIT_S + 0.011
