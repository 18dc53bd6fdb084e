"""Seed config keys that are accepted but not read: a file that sets one loads, with a warning
naming each (semnerf_ros.engine.seed_keys)."""
from __future__ import annotations

import logging
from pathlib import Path

from semnerf_ros.engine.config import DEFAULTS, load_config
from semnerf_ros.engine.seed_keys import UNREAD_SEED_KEYS

ROOT = Path(__file__).resolve().parents[1]


def _warnings(caplog):
    return [r.getMessage() for r in caplog.records if r.name == "semnerf_ros.config" and r.levelno == logging.WARNING]


def test_the_seed_file_loads_and_names_every_unread_key_it_sets(caplog):
    with caplog.at_level(logging.WARNING, logger="semnerf_ros.config"):
        cfg = load_config(ROOT / "config" / "SSR_room0_config.yaml")
    assert cfg["render"]["i_embed"] == 0                     # accepted, as the seed wrote it
    (msg,) = _warnings(caplog)
    assert "SSR_room0_config.yaml" in msg
    for key in ("experiment.convention", "render.i_embed", "experiment.scene_file"):
        assert key in msg, msg


def test_keys_that_are_read_do_not_warn(tmp_path, caplog):
    f = tmp_path / "c.yaml"
    f.write_text("render: {N_rays: 64, depth_range: [0.1, 5.0]}\ntrain: {lrate: 1.0e-3}\n")
    with caplog.at_level(logging.WARNING, logger="semnerf_ros.config"):
        load_config(f, {"mapper": {"max_keyframes": 7}})
    assert _warnings(caplog) == []


def test_overrides_that_set_an_unread_key_warn(caplog):
    with caplog.at_level(logging.WARNING, logger="semnerf_ros.config"):
        load_config(None, {"logging": {"step_log_tfb": 10}})
    (msg,) = _warnings(caplog)
    assert "logging.step_log_tfb" in msg and "overrides" in msg


def test_every_listed_key_is_a_config_key():
    for name in UNREAD_SEED_KEYS:
        section, key = name.split(".")
        assert key in DEFAULTS[section], name
