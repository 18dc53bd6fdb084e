"""Keyframe policy on constructed trajectories and the bounded replay buffer."""
import numpy as np
import pytest
import torch
from boxroom import box_frames, look_at

from semnerf_ros.engine.frame import Frame
from semnerf_ros.engine.geometry import Intrinsics
from semnerf_ros.engine.keyframes import KeyframePolicy, ReplayBuffer

INTR = Intrinsics.from_hfov(32, 24, 90.0)


def run_policy(policy, poses):
    kept = []
    for i, T in enumerate(poses):
        ok, _ = policy.decide(T, INTR)
        if ok:
            policy.accept(T, INTR)
            kept.append(i)
    return kept


def test_translation_threshold_on_a_straight_line():
    # 2 cm steps along x, looking along +y: a keyframe every 10 cm (every 5th pose).
    poses = [look_at([0.02 * i, 0, 0], [0.02 * i, 5, 0]) for i in range(26)]
    pol = KeyframePolicy(min_translation=0.099, min_rotation_deg=90, max_overlap=0.0)
    assert run_policy(pol, poses) == [0, 5, 10, 15, 20, 25]


def test_rotation_threshold_when_turning_in_place():
    # 2 degree yaw steps: a keyframe every 10 degrees.
    poses = []
    for i in range(31):
        a = np.radians(2 * i)
        poses.append(look_at([0, 0, 0], [np.cos(a), np.sin(a), 0]))
    pol = KeyframePolicy(min_translation=10, min_rotation_deg=9.99, max_overlap=0.0)
    assert run_policy(pol, poses) == [0, 5, 10, 15, 20, 25, 30]


def test_standing_still_adds_no_keyframes_and_overlap_triggers():
    still = [look_at([0, 0, 0], [0, 1, 0])] * 10
    pol = KeyframePolicy(0.1, 10, 0.9)
    assert run_policy(pol, still) == [0]
    # Sideways 8 cm at 0.3 m depth: below the motion thresholds but the view overlap drops.
    pol = KeyframePolicy(0.1, 10, 0.9)
    T0 = look_at([0, 0, 0], [0, 1, 0])
    pol.accept(T0, INTR)
    T1 = look_at([0.08, 0, 0], [0.08, 1, 0])
    depth = np.full((24, 32), 0.3, dtype=np.float32)
    ok, reason = pol.decide(T1, INTR, depth)
    assert ok and "overlap" in reason
    ok_far, _ = pol.decide(T1, INTR, np.full((24, 32), 20.0, dtype=np.float32))
    assert not ok_far  # same motion against a distant wall: views overlap


def test_policy_all_keeps_everything():
    pol = KeyframePolicy(policy="all")
    assert run_policy(pol, [np.eye(4)] * 5) == [0, 1, 2, 3, 4]


def make_frame(x, intr=INTR, labels=True):
    h, w = intr.shape
    T = look_at([x, 0, 0], [x, 1, 0])
    lab = np.full((h, w), 1 + int(x * 10) % 5, dtype=np.int32) if labels else None
    return Frame(rgb=np.full((h, w, 3), 100, np.uint8), pose=T, intrinsics=intr, labels=lab,
                 depth=np.ones((h, w), np.float32))


def test_buffer_never_exceeds_bound_and_keeps_newest():
    buf = ReplayBuffer(5, "cpu", eviction="fifo", recent_window=2)
    for i in range(20):
        buf.add(make_frame(0.1 * i))
        assert len(buf) <= 5
    assert buf.keyframe_ids == [15, 16, 17, 18, 19]
    assert buf.evicted == 15
    mem = buf.memory_bytes()
    for i in range(20, 40):
        buf.add(make_frame(0.1 * i))
    assert buf.memory_bytes() == mem  # storage is preallocated: flat memory


def test_coverage_eviction_drops_the_redundant_keyframe():
    buf = ReplayBuffer(4, "cpu", eviction="coverage", recent_window=1)
    for x in (0.0, 1.0, 1.01, 3.0):  # 1.0 and 1.01 are near-duplicates
        buf.add(make_frame(x))
    buf.add(make_frame(5.0))
    xs = sorted(round(float(buf.poses[s][0, 3]), 2) for s in buf.order)
    assert xs in ([0.0, 1.01, 3.0, 5.0], [0.0, 1.0, 3.0, 5.0])
    assert len(buf) == 4


def test_sample_gives_rays_through_the_right_pixels():
    frames = box_frames(4, 32, 24)
    buf = ReplayBuffer(10, "cpu")
    for f in frames:
        buf.add(f)
    g = torch.Generator().manual_seed(0)
    b = buf.sample(256, recent_fraction=0.0, generator=g)
    assert b.origins.shape == (256, 3) and b.labels.dtype == torch.int64
    # Depth along the sampled ray lands on the room wall: |coordinate| reaches the half size.
    from boxroom import HALF
    p = b.origins + b.depth[:, None] * b.dirs
    on_wall = (p.abs() - torch.tensor(HALF, dtype=torch.float32)).abs().min(dim=1).values
    assert float(on_wall.max()) < 0.02  # float16 depth storage


def test_recent_fraction_draws_from_newest_keyframes():
    buf = ReplayBuffer(20, "cpu", recent_window=2)
    for i in range(20):
        buf.add(make_frame(0.1 * i))
    # Give the two newest keyframes a distinctive label.
    for s in buf.order[-2:]:
        buf.labels[s] = 9
    b = buf.sample(4000, recent_fraction=0.5, generator=torch.Generator().manual_seed(0))
    share = float((b.labels == 9).float().mean())
    assert 0.5 < share < 0.6  # 0.5 recent + 0.5 * 2/20 uniform


def test_frames_of_another_size_are_resized_to_storage():
    buf = ReplayBuffer(3, "cpu")
    buf.add(make_frame(0.0))
    big = INTR.resized(64, 48)
    buf.add(make_frame(1.0, intr=big))
    s = buf.order[-1]
    assert buf.K[s, 0].item() == pytest.approx(INTR.fx)


def test_state_roundtrip():
    buf = ReplayBuffer(4, "cpu")
    for i in range(6):
        buf.add(make_frame(0.3 * i, labels=i % 2 == 0))
    st = buf.state_dict()
    other = ReplayBuffer(4, "cpu")
    other.load_state_dict(st)
    assert other.keyframe_ids == buf.keyframe_ids
    assert torch.equal(other.rgb[:4], buf.rgb[torch.tensor(buf.order)])


def kf_set(poses, ids=None):
    from semnerf_ros.engine.keyframes import KeyframeSet

    poses = np.asarray(poses, dtype=np.float64)
    return KeyframeSet(np.arange(len(poses)) if ids is None else np.asarray(ids), poses, INTR)


def test_a_loop_revisits_kept_views_instead_of_adding_them_again():
    """Against every buffered keyframe, not only the last: the second lap of a loop (and a
    return to the start) adds nothing; the first lap keeps the same views as before."""
    lap = []
    for i in range(36):                       # a circle of radius 1 m, looking outwards, 10 deg a step
        a = np.radians(10 * i)
        c = np.array([np.cos(a), np.sin(a), 0.0])
        lap.append(look_at(c, 3 * c))
    pol = KeyframePolicy(0.1, 10.0, 0.9)
    kept, kept_poses = [], []
    for i, T in enumerate(lap + lap):
        ok, reason = pol.decide(T, INTR, keyframes=kf_set(kept_poses) if kept_poses else None)
        if ok:
            pol.accept(T, INTR)
            kept.append(i)
            kept_poses.append(T)
        elif i >= 36:
            assert reason.startswith(f"revisits keyframe {i - 36}"), reason
    assert kept == list(range(36))            # every view of lap 1, nothing of lap 2
    # only the last keyframe as reference: lap 2 would have been added all over again
    assert run_policy(KeyframePolicy(0.1, 10.0, 0.9), lap + lap) == list(range(72))


def test_revisit_needs_both_a_close_pose_and_overlapping_views():
    T = look_at([0, 0, 0], [0, 1, 0])
    pol = KeyframePolicy(0.1, 10.0, 0.9)
    near_wall = np.full((24, 32), 0.3, dtype=np.float32)
    moved = look_at([0.08, 0, 0], [0.08, 1, 0])  # 8 cm sideways: under both motion thresholds
    assert not pol.decide(moved, INTR, keyframes=kf_set([T]))[0]                    # far wall: same view
    ok, reason = pol.decide(moved, INTR, near_wall, keyframes=kf_set([T]))           # wall at 0.3 m
    assert ok and "overlap" in reason
    ok, reason = pol.decide(look_at([2, 0, 0], [2, 1, 0]), INTR, keyframes=kf_set([T]))
    assert ok and "from the nearest of 1 keyframes" in reason


def test_buffer_keyframe_set_follows_adds_evictions_and_loads():
    buf = ReplayBuffer(3, "cpu", eviction="fifo", recent_window=1)
    assert len(buf.keyframe_set()) == 0
    fr = [Frame(rgb=np.zeros((24, 32, 3), np.uint8), pose=look_at([0.5 * i, 0, 0], [0.5 * i, 1, 0]),
                intrinsics=INTR, labels=np.ones((24, 32), np.int32)) for i in range(5)]
    for f in fr:
        buf.add(f)
    ks = buf.keyframe_set()
    assert ks.ids.tolist() == [2, 3, 4]
    np.testing.assert_allclose(ks.poses, np.stack([f.pose for f in fr[2:]]), atol=1e-6)
    assert ks.intrinsics == INTR
    snapshot = ks
    buf.add(fr[0])
    assert buf.keyframe_set() is not snapshot and snapshot.ids.tolist() == [2, 3, 4]   # immutable
    other = ReplayBuffer(3, "cpu")
    other.load_state_dict(buf.state_dict())
    assert other.keyframe_set().ids.tolist() == [3, 4, 5]
