"""The files of a written bag (issue 19, bug 2): the data file is named after the bag
folder as ``ros2 bag record`` names it, visible to ``ls`` and to ``cp bag/* dst/``, also
for the demo's bag, and rosbags reads the bag; the bag's segmentation-like label noise."""
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rosbags")

from semnerf_ros.bags import reader as bag_reader  # noqa: E402
from semnerf_ros.bags import writer as bag_writer  # noqa: E402
from semnerf_ros.datasets import synthetic  # noqa: E402


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return synthetic.make_scene(tmp_path_factory.mktemp("scene") / "s", 6, 32, 24, seed=9, progress=False)


def _ls(folder: Path) -> list:
    """What ``ls`` prints (no hidden entries)."""
    out = subprocess.run(["ls", str(folder)], capture_output=True, text=True, check=True).stdout
    return sorted(out.split())


def _count(bag: Path) -> int:
    from rosbags.rosbag2 import Reader

    with Reader(bag) as reader:
        return sum(1 for _ in reader.messages())


@pytest.mark.parametrize("storage,ext", [("mcap", "mcap"), ("sqlite3", "db3")])
def test_data_file_is_named_after_the_bag(scene, tmp_path, storage, ext):
    bag = tmp_path / "my_bag"
    info = bag_writer.write_scene_bag(scene, bag, storage=storage, progress=False)
    assert _ls(bag) == sorted([f"my_bag_0.{ext}", "metadata.yaml"])
    assert [p.name for p in bag.iterdir() if p.name.startswith(".")] == []
    assert [p.name for p in tmp_path.iterdir()] == ["my_bag"]      # no temporary folder left behind
    meta = (bag / "metadata.yaml").read_text()
    assert f"my_bag_0.{ext}" in meta and ".tmp" not in meta
    assert _count(bag) == sum(info["topics"].values()) > 0


def test_copying_the_visible_files_copies_the_bag(scene, tmp_path):
    bag = tmp_path / "bag"
    bag_writer.write_scene_bag(scene, bag, progress=False)
    dst = tmp_path / "copy"
    dst.mkdir()
    subprocess.run(f"cp {bag}/* {dst}/", shell=True, check=True)   # the user's cp bag/* dst/
    assert _count(dst) == _count(bag) > 0


def test_move_bag_renames_the_storage_files(scene, tmp_path):
    bag_writer.write_scene_bag(scene, tmp_path / "a", progress=False)
    n = _count(tmp_path / "a")
    moved = bag_writer.move_bag(tmp_path / "a", tmp_path / "b")
    assert moved == tmp_path / "b" and not (tmp_path / "a").exists()
    assert _ls(tmp_path / "b") == ["b_0.mcap", "metadata.yaml"]
    assert _count(tmp_path / "b") == n
    assert bag_reader.bag_custom_data(tmp_path / "b")["semnerf.num_classes"] == "18"
    (tmp_path / "c").mkdir()
    with pytest.raises(bag_writer.BagWriteError, match="exists"):
        bag_writer.move_bag(tmp_path / "b", tmp_path / "c")
    with pytest.raises(bag_writer.BagWriteError, match="metadata"):
        bag_writer.move_bag(tmp_path / "c", tmp_path / "d")


def test_failed_write_leaves_nothing(scene, tmp_path, monkeypatch):
    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(bag_writer, "move_bag", boom)
    with pytest.raises(OSError, match="disk full"):
        bag_writer.write_scene_bag(scene, tmp_path / "bag", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_demo_bag_has_a_visible_data_file(scene, tmp_path):
    from semnerf_ros import demo

    s = demo.Settings(out=tmp_path / "run", device="cpu", width=32, height=24, frames=6, duration=10.0, rate=1.0,
                      publish_rate=1.0, render_scale=0.5, mesh_resolution=16, domain_id=1, report_every=5.0)
    s.out.mkdir()
    bag, info = demo.ensure_bag(scene, s)
    assert bag.name == "bag_32x24_f6_pixel0.5" and not info["reused"]
    assert _ls(bag) == sorted(["bag_32x24_f6_pixel0.5_0.mcap", "metadata.yaml", demo.BAG_MARKER])
    assert _ls(s.out) == [bag.name]
    assert _count(bag) > 0
    again, info2 = demo.ensure_bag(scene, s)
    assert again == bag and info2["reused"]
    # the demo's segmentation-noise bag is a bag of its own
    s.noise, s.noise_strength = "segmentation", 0.3
    seg, _ = demo.ensure_bag(scene, s)
    assert seg.name == "bag_32x24_f6_segmentation0.3" and (seg / "bag_32x24_f6_segmentation0.3_0.mcap").is_file()


def test_demo_cli_noise_flags():
    from semnerf_ros import demo
    from semnerf_ros.cli import demo as demo_cli

    args = demo_cli.build_parser().parse_args(["--device", "cpu", "--noise", "segmentation",
                                               "--noise-strength", "0.25"])
    s = demo.make_settings(args)
    assert (s.noise, s.noise_strength) == ("segmentation", 0.25)
    s = demo.make_settings(demo_cli.build_parser().parse_args(["--device", "cpu"]))
    assert (s.noise, s.noise_strength) == ("pixel", 0.5)
    with pytest.raises(demo.DemoError, match="noise-strength"):
        demo.make_settings(demo_cli.build_parser().parse_args(["--device", "cpu", "--noise-strength", "2"]))


def test_bag_with_segmentation_noise(scene, tmp_path):
    from semnerf_ros.bridge import convert

    info = bag_writer.write_scene_bag(scene, tmp_path / "bag", noise="segmentation", noise_ratio=0.6, seed=3,
                                      progress=False)
    assert info["noise_info"]["kind"] == "segmentation" and info["noise_info"]["changed_ratio"] > 0.05
    assert json.loads(bag_reader.bag_custom_data(tmp_path / "bag")["semnerf.noise"])["model"] == "segmentation"
    labels = {}
    for topic, _, _, msg in bag_reader.read_bag_messages(tmp_path / "bag", [bag_writer.TOPIC_LABELS,
                                                                            bag_writer.TOPIC_LABELS_GT]):
        labels.setdefault(topic, []).append(convert.image_to_numpy(msg))
    noisy = np.stack(labels[bag_writer.TOPIC_LABELS])
    gt = np.stack(labels[bag_writer.TOPIC_LABELS_GT])
    assert noisy.shape == gt.shape and np.mean(noisy != gt) > 0.05
    assert np.all(noisy[gt == 0] == 0)
    with pytest.raises(bag_writer.BagWriteError, match=r"\[0, 1\]"):
        bag_writer.write_scene_bag(scene, tmp_path / "x", noise="segmentation", noise_ratio=1.5, progress=False)
    shutil.rmtree(tmp_path / "bag")
