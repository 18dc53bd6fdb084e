"""Every key of the seed's config files is honoured or rejected with a message that says why
(semnerf_ros.engine.seed_keys, issue 18 gap 6); both of the seed's files load unchanged."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml

from semnerf_ros.engine.config import DEFAULTS, SEED_PROTOCOL_PRESET, ConfigError, load_config, user_keys
from semnerf_ros.engine.seed_keys import SEED_KEYS, SEED_RUN_RECORD_KEYS, UNSUPPORTED

ROOT = Path(__file__).resolve().parents[1]
SEED_FILES = [ROOT / "config" / "SSR_room0_config.yaml", ROOT / "config" / "SSR_ScanNet_config.yaml"]
# the keys of the seed's SSR/configs/*.yaml (both files), and what its replica_nyu_cnn path reads
SEED_FILE_KEYS = {
    "experiment": ["scene_file", "save_dir", "dataset_dir", "convention", "width", "height", "gpu",
                   "enable_semantic", "enable_depth", "endpoint_feat", "sample_step", "nyu_mode", "load_softmax"],
    "model": ["netdepth", "netwidth", "netdepth_fine", "netwidth_fine", "chunk", "netchunk"],
    "render": ["N_rays", "N_samples", "N_importance", "perturb", "use_viewdirs", "i_embed", "multires",
               "multires_views", "raw_noise_std", "test_viz_factor", "no_batching", "depth_range", "white_bkgd"],
    "train": ["lrate", "lrate_decay", "N_iters", "wgt_sem"],
    "logging": ["step_log_print", "step_log_tfb", "step_save_ckpt", "step_val", "step_vis_train"],
}


def test_every_seed_key_is_a_config_key_with_a_documented_meaning():
    names = {f"{s}.{k}" for s, keys in SEED_FILE_KEYS.items() for k in keys}
    assert names == set(SEED_KEYS)
    doc = (ROOT / "docs" / "seed_parity.md").read_text()
    for name in names:
        section, key = name.split(".")
        assert key in DEFAULTS[section], name
        assert f"`{name}`" in doc, f"docs/seed_parity.md does not list {name}"


def test_both_seed_files_load_unchanged_and_silently(caplog):
    for f in SEED_FILES:
        with caplog.at_level(logging.WARNING):
            cfg = load_config(f)
        assert caplog.records == [], f
        data = yaml.safe_load(f.read_text())
        for section, body in data.items():
            for key in body:
                assert key in cfg[section], (f, section, key)
    scannet = load_config(SEED_FILES[1])
    assert scannet["experiment"]["sample_step"] == 100 and scannet["render"]["no_batching"] is True
    assert scannet["render"]["N_rays"] == 1024 and scannet["model"]["chunk"] == 1024 * 128


@pytest.mark.parametrize("name,value", [(n, v) for n, v in UNSUPPORTED])
def test_unsupported_values_are_rejected_with_the_reason(name, value):
    section, key = name.split(".")
    with pytest.raises(ConfigError, match="not supported") as err:
        load_config(None, {section: {key: value}})
    assert name in str(err.value) and "seed" in str(err.value)


def test_supported_values_of_the_same_keys_load():
    cfg = load_config(None, {"render": {"i_embed": 0}, "experiment": {"endpoint_feat": False,
                                                                      "load_softmax": False}})
    assert cfg["render"]["i_embed"] == 0
    with pytest.raises(ConfigError, match="convention"):
        load_config(None, {"experiment": {"convention": "blender"}})
    assert load_config(None, {"experiment": {"convention": "opengl"}})["experiment"]["convention"] == "opengl"
    with pytest.raises(ConfigError, match="nyu_mode"):
        load_config(None, {"experiment": {"nyu_mode": "nyu41"}})


def test_a_seed_exp_config_with_its_flags_is_refused_naming_the_flag(tmp_path):
    # what the seed writes: its config plus config["experiment"].update(vars(args)) and the split
    data = yaml.safe_load(SEED_FILES[0].read_text())
    data["experiment"].update({"pixel_denoising": True, "pixel_noise_ratio": 0.5, "train_ids": [0, 5],
                               "dataset_type": "replica"})
    f = tmp_path / "exp_config.yaml"
    f.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as err:
        load_config(f)
    msg = str(err.value)
    assert "--pixel_denoising" in msg and "--pixel_noise_ratio" in msg and "train_step" in msg
    assert set(SEED_RUN_RECORD_KEYS) >= {"sparse_views", "label_map_ids", "instance_id", "load_saved"}


def test_presets_sit_under_the_file_and_the_overrides(tmp_path):
    assert load_config(None, presets=SEED_PROTOCOL_PRESET)["render"]["no_batching"] is True
    assert load_config(None)["render"]["no_batching"] is False               # the online default
    f = tmp_path / "c.yaml"
    f.write_text("render: {no_batching: false}\n")
    assert load_config(f, presets=SEED_PROTOCOL_PRESET)["render"]["no_batching"] is False
    assert load_config(f, {"render": {"no_batching": True}})["render"]["no_batching"] is True
    assert user_keys({"render": {"no_batching": False}}, {"experiment": {"seed": 1}}) == {
        "render.no_batching", "experiment.seed"}
