"""Multi-view label fusion (engine/label_fusion.py): votes per voxel, the decision rule,
the relabelling of training rays, and its life in a Mapper (keyframes, save/load, reset)."""
import numpy as np
import pytest
import torch
from boxroom import NUM_CLASSES, box_frames

from semnerf_ros.engine.config import make_config
from semnerf_ros.engine.label_fusion import VoxelLabelFusion
from semnerf_ros.engine.mapper import Mapper


def votes(fusion, point, labels):
    p = torch.tensor([point] * len(labels), dtype=torch.float32)
    return fusion.integrate(p, torch.tensor(labels))


def test_votes_decide_a_voxel_only_with_enough_votes_and_a_clear_winner():
    f = VoxelLabelFusion(5, cell=0.1, device="cpu", min_count=3, margin=2.0)
    assert votes(f, (0.05, 0.05, 0.05), [2, 2]) == 2
    winner, decided, total, _ = f.lookup(torch.tensor([[0.01, 0.09, 0.02]]))
    assert winner.item() == 2 and not decided.item() and total.item() == 2      # 2 votes < min_count
    votes(f, (0.05, 0.05, 0.05), [2, 3])
    winner, decided, total, _ = f.lookup(torch.tensor([[0.05, 0.05, 0.05]]))
    assert decided.item() and total.item() == 4                                   # 3 vs 1: 3 >= 2 * 1
    votes(f, (0.05, 0.05, 0.05), [3])
    assert not f.lookup(torch.tensor([[0.05, 0.05, 0.05]]))[1].item()            # 3 vs 2: no clear winner
    # void casts no vote, non-finite points are skipped; another voxel is separate
    assert votes(f, (0.05, 0.05, 0.05), [0, 0]) == 0
    assert f.integrate(torch.tensor([[np.nan, 0.0, 0.0]]), torch.tensor([1])) == 0
    votes(f, (-0.05, 0.05, 0.05), [4, 4, 4])
    assert len(f) == 2 and f.votes == 8
    winner, decided, _, _ = f.lookup(torch.tensor([[-0.01, 0.01, 0.01], [0.5, 0.5, 0.5]]))
    assert winner[0].item() == 4 and decided.tolist() == [True, False]          # unseen voxel: undecided


def test_a_class_with_many_votes_that_wins_no_voxel_is_noise_and_trains_nothing():
    """noise_classes: two real surfaces (classes 1 and 2, many pixels a voxel, 50 % of them relabelled
    at random) and noise of class 3 spread over every voxel; class 4 has a few clean votes only
    (sparse labels: never judged).  Class 3 is judged noise once it passes JUDGE_VOTES: its rays get
    void (with depth and without), the others keep their targets; without the option nothing
    changes."""
    from semnerf_ros.engine.label_fusion import JUDGE_VOTES
    g = torch.Generator().manual_seed(0)

    def cast(f, n_voxels):
        pts, labs = [], []
        for v in range(n_voxels):
            true = 1 if v % 2 else 2
            lab = torch.full((40,), true)
            flip = torch.rand(40, generator=g) < 0.5
            lab[flip] = torch.randint(1, 4, (int(flip.sum()),), generator=g)   # noise among 1-3
            pts.append(torch.tensor([[0.1 * v + 0.05, 0.05, 0.05]]).expand(40, 3))
            labs.append(lab)
        f.integrate(torch.cat(pts), torch.cat(labs))
        f.integrate(torch.tensor([[0.05, 1.05, 0.05], [0.05, 2.05, 0.05]]), torch.tensor([4, 4]))

    on = VoxelLabelFusion(5, cell=0.1, device="cpu", noise_classes=True)
    off = VoxelLabelFusion(5, cell=0.1, device="cpu")
    cast(on, 20)                                    # about 130 votes for class 3: not judged yet
    assert on.noise_class_ids() == []
    cast(on, 300)
    cast(off, 320)
    assert int(on.counts[:, 3].sum()) >= JUDGE_VOTES and on.noise_class_ids() == [3]
    assert off.noise_class_ids() == [] and on.stats()["noise_classes"] == [3]
    # rays (dirs with z = 1) to an undecided voxel (none there: the pixel's label), a decided one,
    # and the sparse class's voxel
    origins = torch.tensor([[-3.05, 0.05, 0.0], [-3.05, 0.05, 0.0], [0.15, 0.05, 0.0], [0.05, 1.05, 0.0]])
    dirs = torch.tensor([[0.0, 0.0, 1.0]] * 4)
    depth = torch.full((4,), 0.05)
    labels = torch.tensor([3, 2, 3, 4])
    assert on.relabel(origins, dirs, depth, labels).tolist() == [0, 2, 1, 4]
    assert off.relabel(origins, dirs, depth, labels).tolist() == [3, 2, 1, 4]
    assert on.relabel(origins, dirs, None, labels).tolist() == [0, 2, 0, 4]     # no depth: pixel labels
    # a map seen at a few votes a voxel (clearly won voxels hold under half the votes) judges nothing
    sparse = VoxelLabelFusion(5, cell=0.1, device="cpu", noise_classes=True)
    pts = torch.tensor([[0.1 * v + 0.05, 0.05, 0.05] for v in range(1200)]).repeat_interleave(4, 0)
    sparse.integrate(pts, torch.tensor([1, 1, 3, 2] * 1200))   # without the rule: 1, 2 and 3 all noise
    assert int(sparse.counts[:, 3].sum()) >= JUDGE_VOTES and sparse.noise_class_ids() == []
    # the judgement is saved with the votes
    again = VoxelLabelFusion(5, cell=0.1, device="cpu", noise_classes=True)
    assert again.load_state_dict(on.state_dict()) and again.noise_class_ids() == [3]
    again.clear()
    assert again.noise_class_ids() == []


def test_keep_share_lets_a_second_object_in_the_voxel_keep_its_label_but_not_noise():
    """A voxel where two objects meet (7 votes for 2, 4 for 3) and one noisy vote for 1:
    without keep_share every pixel takes the winner; with 0.5 the second object's pixels keep
    label 3, the noise (1 vote) still becomes the winner, and an ambiguous voxel keeps its
    objects' labels instead of voiding them."""
    pts = torch.tensor([[0.05, 0.05, 0.05]] * 3)
    dirs, depth = pts.clone(), torch.ones(3)            # origin 0, depth 1: the voxel at pts
    for share, want in ((0.0, [2, 2, 2]), (0.5, [2, 3, 2])):
        f = VoxelLabelFusion(5, cell=0.1, device="cpu", min_count=3, margin=1.5, keep_share=share)
        votes(f, (0.05, 0.05, 0.05), [2] * 7 + [3] * 4 + [1])
        out = f.relabel(torch.zeros(3, 3), dirs, depth, torch.tensor([2, 3, 1]))
        assert out.tolist() == want, share
    f = VoxelLabelFusion(5, cell=0.1, device="cpu", min_count=3, margin=2.0, keep_share=0.5)
    votes(f, (0.05, 0.05, 0.05), [2] * 5 + [3] * 4 + [1])     # 5 vs 4: ambiguous
    out = f.relabel(torch.zeros(3, 3), dirs, depth, torch.tensor([2, 3, 1]))
    assert out.tolist() == [2, 3, 0]
    with pytest.raises(ValueError, match="keep_share"):
        VoxelLabelFusion(5, cell=0.1, device="cpu", keep_share=1.5)


def test_keys_are_sorted_and_counts_follow_their_voxels_when_new_voxels_arrive():
    f = VoxelLabelFusion(4, cell=1.0, device="cpu", min_count=1)
    rng = np.random.default_rng(0)
    cells = rng.integers(-50, 50, size=(200, 3))
    truth = {}
    for batch in np.array_split(np.arange(200), 7):           # several merges of new voxels
        lab = rng.integers(1, 4, size=len(batch))
        f.integrate(torch.tensor(cells[batch] + 0.5, dtype=torch.float32), torch.tensor(lab))
        for c, lab_i in zip(map(tuple, cells[batch]), lab):
            truth.setdefault(c, np.zeros(4))[lab_i] += 1
    assert torch.all(f.keys[1:] > f.keys[:-1])
    pts = torch.tensor(np.array(list(truth)) + 0.5, dtype=torch.float32)
    pos = torch.searchsorted(f.keys, f._keys(pts))
    np.testing.assert_array_equal(f.counts[pos].numpy(), np.array(list(truth.values())))


def test_relabel_replaces_noisy_labels_of_a_seen_surface_and_leaves_the_rest():
    """Ten noisy views of the box room vote; a ray batch with 50 % wrong labels is relabelled
    to the clean labels wherever its voxel is decided, and rays without depth keep theirs."""
    frames = box_frames(10, 48, 36)
    rng = np.random.default_rng(1)
    f = VoxelLabelFusion(NUM_CLASSES, cell=0.15, device="cpu", min_count=3, margin=2.0)
    for fr in frames:
        noisy = fr.labels.copy()
        flip = rng.random(noisy.shape) < 0.5
        noisy[flip] = rng.integers(1, NUM_CLASSES, size=flip.sum())
        f.integrate_depth(fr.depth, noisy, fr.intrinsics, fr.pose)
    fr = frames[3]
    every_other = VoxelLabelFusion(NUM_CLASSES, cell=0.15, device="cpu", stride=2)
    lab = fr.labels.copy()
    lab[:, :5] = 0                                                               # void casts no vote
    assert every_other.integrate_depth(fr.depth, lab, fr.intrinsics, fr.pose) == \
        int(((fr.depth[::2, ::2] > 0) & (lab[::2, ::2] > 0)).sum())
    h, w = fr.intrinsics.shape
    v, u = np.mgrid[0:h, 0:w]
    d_cam = np.stack([(u - fr.intrinsics.cx) / fr.intrinsics.fx, (v - fr.intrinsics.cy) / fr.intrinsics.fy,
                      np.ones((h, w))], -1).reshape(-1, 3)
    dirs = torch.tensor(d_cam @ fr.pose[:3, :3].T, dtype=torch.float32)
    origins = torch.tensor(fr.pose[:3, 3], dtype=torch.float32).expand_as(dirs)
    clean = torch.tensor(fr.labels.reshape(-1), dtype=torch.int64)
    noisy = clean.clone()
    flip = torch.rand(clean.shape, generator=torch.Generator().manual_seed(2)) < 0.5
    noisy[flip] = (clean[flip] % (NUM_CLASSES - 1)) + 1                         # always wrong
    depth = torch.tensor(fr.depth.reshape(-1), dtype=torch.float32)
    out = f.relabel(origins, dirs, depth, noisy)
    noisy_acc = (noisy == clean).float().mean().item()
    kept = out > 0                                                                # ambiguous voxels: void
    fused_acc = (out[kept] == clean[kept]).float().mean().item()
    assert noisy_acc < 0.55 and fused_acc > 0.95 and kept.float().mean() > 0.8, (noisy_acc, fused_acc)
    # an ambiguous voxel (enough votes, no clear winner) voids its rays' labels; a fresh one keeps them
    g = VoxelLabelFusion(5, cell=1.0, device="cpu", min_count=3, margin=2.0)
    votes(g, (0.5, 0.5, 0.5), [1, 1, 2, 2])
    votes(g, (1.5, 0.5, 0.5), [3])
    o = torch.zeros(3, 3)
    d = torch.tensor([[0.5, 0.5, 0.5], [1.5, 0.5, 0.5], [2.5, 0.5, 0.5]])      # depth 1: the points themselves
    assert g.relabel(o, d, torch.ones(3), torch.tensor([4, 4, 4])).tolist() == [0, 4, 4]
    # a ray without depth, or an unlabelled (void) one, is never relabelled
    depth[:100] = 0
    noisy[100:200] = 0
    out = f.relabel(origins, dirs, depth, noisy)
    assert torch.equal(out[:200], noisy[:200])
    assert f.relabel(origins, dirs, None, noisy) is noisy


def test_a_full_table_refuses_new_voxels_but_keeps_counting_known_ones():
    f = VoxelLabelFusion(3, cell=1.0, device="cpu", max_memory_mb=2 * (8 + 4 * 3) / 2 ** 20)   # two voxels
    f.integrate(torch.tensor([[0.5, 0, 0], [1.5, 0, 0], [2.5, 0, 0]]), torch.tensor([1, 1, 1]))
    assert len(f) == 2 and f.full and f.votes == 2
    f.integrate(torch.tensor([[0.5, 0, 0]]), torch.tensor([2]))
    assert f.votes == 3


def tiny_cfg(fusion=True):
    return make_config({
        "experiment": {"device": "cpu", "seed": 0},
        "model": {"type": "hash", "hash": {"n_levels": 4, "log2_hashmap_size": 12, "base_resolution": 4,
                                           "finest_resolution": 32, "hidden_dim": 16, "hidden_dim_color": 16,
                                           "hidden_dim_semantic": 16}},
        "render": {"N_rays": 128, "depth_range": [0.05, 6.0], "occupancy_resolution": 16, "march_steps": 64,
                   "max_samples_per_ray": 16},
        "train": {"label_fusion": fusion, "label_fusion_cell": 0.17},
        "mapper": {"keyframe_policy": "all"},
    })


def test_the_mapper_votes_with_each_keyframe_trains_on_fused_labels_and_keeps_the_votes_in_its_file(tmp_path):
    frames = box_frames(6, 32, 24)
    m = Mapper(tiny_cfg(), NUM_CLASSES, device="cpu")
    for fr in frames:
        m.add_frame(fr)
    st = m.stats()["label_fusion"]
    valid = sum(int(((fr.depth > 0) & (fr.labels > 0)).sum()) for fr in frames)
    assert st["votes"] == valid and st["voxels"] > 10
    # the training batch's labels are the fused ones: wrong pixel labels in every keyframe
    # are overruled where the voxels are decided
    m.buffer.labels[:] = 1
    batch = m.buffer.sample(512)
    fused = m.fusion.relabel(batch.origins, batch.dirs, batch.depth, batch.labels)
    assert (fused != 1).float().mean() > 0.5
    m.step(2)
    path = m.save(tmp_path / "map.pt")
    loaded = Mapper.load(path, device="cpu")
    assert torch.equal(loaded.fusion.keys, m.fusion.keys) and torch.equal(loaded.fusion.counts, m.fusion.counts)
    # a file without votes (older, or cast with another voxel size) rebuilds them from its keyframes
    state = m.state_dict()
    state["label_fusion"] = None
    rebuilt = Mapper.from_state(state, device="cpu")
    assert rebuilt.fusion.votes == m.fusion.votes   # depth is stored as float16: voxels may differ a little
    assert abs(len(rebuilt.fusion) - len(m.fusion)) <= 0.02 * len(m.fusion)
    rebuilt.reset()
    assert len(rebuilt.fusion) == 0
    assert Mapper(tiny_cfg(fusion=False), NUM_CLASSES, device="cpu").fusion is None


def test_with_background_training_votes_are_cast_off_the_intake_path_and_none_is_lost(tmp_path, monkeypatch):
    """mapper.defer_label_votes: while the background thread trains, add_frame queues a keyframe's
    votes for the vote thread instead of casting them; every queued vote is cast (wait_for_votes,
    save, stop) unless the map was reset meanwhile; without background training they are cast at once."""
    import threading

    frames = box_frames(6, 32, 24)
    valid = [int(((fr.depth > 0) & (fr.labels > 0)).sum()) for fr in frames]
    m = Mapper(tiny_cfg(), NUM_CLASSES, device="cpu")
    m.add_frame(frames[0])
    assert m.fusion.votes == valid[0]                  # no background thread: cast in add_frame
    gate = threading.Event()
    real_fuse = m._fuse
    monkeypatch.setattr(m, "_fuse", lambda *a: (gate.wait(10), real_fuse(*a)))
    m.start()
    try:
        for fr in frames[1:4]:
            m.add_frame(fr)                            # returns at once: the votes wait
        assert m.fusion.votes == valid[0] and m.stats()["label_fusion"]["keyframes_waiting"] >= 2
        assert not m.wait_for_votes(0.05)
        gate.set()
        assert m.wait_for_votes(10.0)
        assert m.fusion.votes == sum(valid[:4])
        # a reset forgets the votes still queued (they belong to the keyframes it dropped); it waits
        # for the one being cast (held here until the timer opens the gate), then clears them all
        gate.clear()
        m.add_frame(frames[4])
        m.add_frame(frames[5])
        threading.Timer(0.2, gate.set).start()
        m.reset()
        assert m.wait_for_votes(10.0)
        assert m.fusion.votes == 0 and len(m.fusion) == 0
        # stop() casts what is queued before it returns, and add_frame casts its own afterwards
        gate.clear()
        m.add_frame(frames[0])
        threading.Timer(0.2, gate.set).start()
    finally:
        gate.set()
        assert m.stop(10.0)
    assert m.fusion.votes == valid[0]
    m.add_frame(frames[1])
    assert m.fusion.votes == valid[0] + valid[1]
    off = tiny_cfg()
    off["mapper"]["defer_label_votes"] = False
    m2 = Mapper(off, NUM_CLASSES, device="cpu")
    m2.start()
    try:
        m2.add_frame(frames[0])
        assert m2.fusion.votes == valid[0]             # cast in add_frame, background training or not
    finally:
        m2.stop()


@pytest.mark.parametrize("key,value", [("label_fusion_cell", 0.0)])
def test_a_bad_fusion_setting_is_refused_with_its_name(key, value):
    with pytest.raises(ValueError, match="cell"):
        Mapper(make_config({"experiment": {"device": "cpu"}, "train": {"label_fusion": True, key: value}}),
               NUM_CLASSES, device="cpu")


def test_training_may_relabel_while_another_thread_casts_votes():
    """Votes are swapped in whole: a reader never sees keys and counts of different sizes."""
    import threading

    f = VoxelLabelFusion(6, cell=0.1, device="cpu", min_count=1)
    rng = np.random.default_rng(3)
    batches = [(torch.tensor(rng.uniform(-2, 2, (500, 3)), dtype=torch.float32),
                torch.tensor(rng.integers(1, 6, 500))) for _ in range(40)]
    errors = []

    def cast():
        for p, lab in batches:
            f.integrate(p, lab)

    t = threading.Thread(target=cast)
    t.start()
    o = torch.zeros(256, 3)
    while t.is_alive():
        try:
            d = torch.tensor(rng.uniform(-2, 2, (256, 3)), dtype=torch.float32)
            f.relabel(o, d, torch.ones(256), torch.ones(256, dtype=torch.int64))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
    t.join()
    assert not errors
    assert f.votes == 40 * 500 and f.counts.sum().item() == 40 * 500 and len(f) == f.counts.shape[0]


def test_votes_taken_back_leave_the_table_as_before_and_create_no_voxel():
    f = VoxelLabelFusion(4, cell=1.0, device="cpu")
    pts = torch.tensor([[0.5, 0, 0], [0.5, 0.2, 0], [1.5, 0, 0]])
    f.integrate(pts, torch.tensor([1, 1, 2]))
    before = f.counts.clone()
    f.integrate(pts[:2], torch.tensor([3, 3]))
    f.integrate(pts[:2], torch.tensor([3, 3]), weight=-1.0)
    assert torch.equal(f.counts, before) and f.votes == 3
    f.integrate(torch.tensor([[7.5, 0, 0], [0.5, 0, 0]]), torch.tensor([1, 2]), weight=-1.0)
    assert len(f) == 2 and (f.counts >= 0).all()   # no voxel for 7.5; no negative count


def rgb_only_cfg(**train):
    cfg = tiny_cfg()
    cfg["train"].update(label_fusion_rendered_depth=True, label_fusion_render_after=0, label_fusion_render_every=1,
                        label_fusion_render_stride=2, label_fusion_render_opacity=0.5, **train)
    return cfg


def test_keyframes_without_depth_vote_through_a_rendered_depth_and_take_old_votes_back(tmp_path):
    frames = box_frames(4, 32, 24, with_depth=False)
    m = Mapper(rgb_only_cfg(), NUM_CLASSES, device="cpu")
    for fr in frames:
        m.add_frame(fr)
    assert len(m.fusion) == 0 and m.buffer.label_depth is None   # nothing to vote with yet
    for _ in range(60):   # train some geometry
        m.step()
    assert len(m._rendered_votes) == 4 and m.fusion.votes > 0
    per_kf = {k: int(v["labels"].numel()) for k, v in m._rendered_votes.items()}
    assert m.fusion.votes == sum(per_kf.values())   # re-rendering took each keyframe's old votes back
    assert m.stats()["label_fusion"]["rendered_keyframes"] == 4
    # the rays of those keyframes look their labels up at the rendered depth, depth loss untouched
    batch = m.buffer.sample(256)
    assert batch.depth is None and batch.label_depth is not None and (batch.label_depth > 0).any()
    m.buffer.labels[:] = 1
    batch = m.buffer.sample(512)
    assert (m.fusion.relabel(batch.origins, batch.dirs, batch.label_depth, batch.labels) != 1).any()
    # a map file keeps them, so the loaded map takes them back when it renders again
    loaded = Mapper.load(m.save(tmp_path / "map.pt"), device="cpu")
    assert set(loaded._rendered_votes) == set(m._rendered_votes) and loaded.fusion.votes == m.fusion.votes
    loaded.step()
    assert loaded.fusion.votes <= m.fusion.votes + max(per_kf.values())
    loaded.reset()
    assert loaded._rendered_votes == {} and len(loaded.fusion) == 0


def test_measured_depth_keeps_its_place_beside_rendered_depth():
    frames = box_frames(4, 32, 24)
    frames[1] = box_frames(4, 32, 24, with_depth=False)[1]
    m = Mapper(rgb_only_cfg(), NUM_CLASSES, device="cpu")
    for fr in frames:
        m.add_frame(fr)
    m.step(3)
    assert list(m._rendered_votes) == [m.buffer.slot_ids[m.buffer.order[1]]]   # only the keyframe without depth
    b = m.buffer
    slots = torch.tensor(b.order)
    v = torch.randint(0, 24, (4,))
    u = torch.randint(0, 32, (4,))
    batch = b._ray_batch(slots, v, u)
    measured = b.has_depth[slots]
    assert torch.equal(batch.label_depth[measured], batch.depth[measured])
    assert (batch.depth[~measured] == 0).all()


def test_bad_rendered_depth_settings_are_refused():
    with pytest.raises(ValueError, match="label_fusion_render_every"):
        make_config({"train": {"label_fusion_render_every": 0}})
    with pytest.raises(ValueError, match="opacity"):
        make_config({"train": {"label_fusion_render_opacity": 1.5}})


def test_label_depth_takes_the_nearest_rendered_pixel():
    from semnerf_ros.engine.keyframes import ReplayBuffer

    buf = ReplayBuffer(2, "cpu")
    buf.add(box_frames(1, 8, 6, with_depth=False)[0])
    rendered = torch.arange(6, dtype=torch.float32).reshape(2, 3) + 1.0   # rows 1, 4 and columns 1, 4, 7
    buf.set_label_depth(0, rendered, stride=3, offset=1)
    got = buf.label_depth[0].float()
    assert got.shape == (6, 8)
    assert got[1, 1] == 1 and got[4, 4] == 5 and got[1, 7] == 3 and got[5, 0] == 4
    assert got[2, 2] == 1 and got[3, 3] == 5   # (3 - 1) / 3 rounds to 1
