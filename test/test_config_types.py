"""Typed config sections (engine/config.py): the defaults are written once, in dataclasses,
and the seed-compatible YAML builds them."""
import dataclasses
import typing

import pytest

from semnerf_ros.engine.config import (
    DEFAULTS,
    ConfigError,
    EngineConfig,
    HashConfig,
    TrainConfig,
    load_config,
    make_config,
)


def test_the_dict_defaults_are_the_dataclasses_defaults():
    assert DEFAULTS == EngineConfig().to_dict()
    assert DEFAULTS["train"]["lrate"] == TrainConfig().lrate == 5e-4
    assert DEFAULTS["model"]["hash"]["semantic_grid_cell"] == HashConfig().semantic_grid_cell
    # every field is typed, and each default is an instance of its declared type
    sections = typing.get_type_hints(EngineConfig)
    for name, cls in list(sections.items()) + [("model.hash", HashConfig)]:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            default = getattr(cls(), f.name)
            kind = hints[f.name]
            allowed = typing.get_args(kind) if typing.get_origin(kind) is typing.Union else (kind,)
            allowed = tuple(type(None) if a is None else a for a in allowed)
            assert isinstance(default, allowed), (name, f.name, default, kind)


def test_a_seed_yaml_builds_typed_sections_with_the_seeds_spellings(tmp_path):
    p = tmp_path / "cfg.yaml"
    p.write_text("experiment: {device: cpu}\nmodel: {type: hash, chunk: '1024*32'}\n"
                 "train: {lrate: '5e-3', lrate_decay: 250e3, label_fusion_cell: 0.05}\n")
    cfg = EngineConfig.from_dict(load_config(p))
    assert cfg.model.type == "hash" and cfg.model.chunk == 32768 and isinstance(cfg.model.chunk, int)
    assert cfg.train.lrate == pytest.approx(5e-3) and cfg.train.lrate_decay == 250000.0
    assert cfg.train.label_fusion_cell == 0.05 and isinstance(cfg.model.hash, HashConfig)
    assert cfg.to_dict() == load_config(p)


def test_unknown_keys_and_bad_values_are_refused_with_their_name():
    with pytest.raises(ConfigError, match="train.label_fusion_cel'.*label_fusion_cell"):
        make_config({"train": {"label_fusion_cel": 0.05}})
    with pytest.raises(ConfigError, match="label_fusion_cell"):
        make_config({"train": {"label_fusion_cell": 0.0}})
    bad = make_config({})
    bad["mapper"]["not_a_key"] = 1
    with pytest.raises(ConfigError, match="not_a_key"):
        EngineConfig.from_dict(bad)


def test_keys_the_chosen_field_does_not_read_are_named_in_a_warning(tmp_path, caplog):
    p = tmp_path / "cfg.yaml"
    p.write_text("experiment: {device: cpu}\nmodel: {type: hash, netdepth: 4}\nrender: {N_samples: 32}\n")
    with caplog.at_level("WARNING", logger="semnerf_ros.config"):
        load_config(p)
    msg = " ".join(r.getMessage() for r in caplog.records)
    assert "model.netdepth" in msg and "render.N_samples" in msg and "model.type hash" in msg
    caplog.clear()
    with caplog.at_level("WARNING", logger="semnerf_ros.config"):
        load_config(None, {"model": {"type": "nerf", "hash": {"n_levels": 8}}})
        load_config(None, {"model": {"type": "hash", "hash": {"n_levels": 8}}})   # read: no warning
    assert [r.getMessage() for r in caplog.records] == [
        "the overrides: model.hash not read by model.type nerf (set for the other field; no effect)"]


def test_benchmark_overrides_nest_any_depth_and_take_yaml_values():
    from semnerf_ros.engine.config import overrides_from_items

    base = {"experiment": {"device": "cpu"}}
    out = overrides_from_items(["train.wgt_depth=0.05", "model.hash.semantic_grid_cell=0.04",
                                "train.label_fusion=false", "render.scene_bounds=[-1, -1, -1, 1, 1, 1]"], base)
    assert out == {"experiment": {"device": "cpu"}, "train": {"wgt_depth": 0.05, "label_fusion": False},
                   "model": {"hash": {"semantic_grid_cell": 0.04}}, "render": {"scene_bounds": [-1, -1, -1, 1, 1, 1]}}
    assert base == {"experiment": {"device": "cpu"}}                       # the base is not changed
    assert load_config(None, out)["model"]["hash"]["semantic_grid_cell"] == 0.04
    with pytest.raises(ConfigError, match="SECTION.KEY=VALUE"):
        overrides_from_items(["train.wgt_depth"])


def test_view_path_is_checked_and_reaches_the_model():
    from semnerf_ros.engine.models import build_model

    assert load_config(None, {})["render"]["view_path"] == "packed"   # the default (front to back)
    assert load_config(None, {"render": {"view_path": "dense"}})["render"]["view_path"] == "dense"
    with pytest.raises(ConfigError, match="render.view_path must be 'dense' or 'packed'"):
        load_config(None, {"render": {"view_path": "fast"}})
    cfg = load_config(None, {"model": {"type": "hash"}, "render": {"view_path": "dense"}})
    assert build_model(cfg, 4, [[-1, -1, -1], [1, 1, 1]]).view_path == "dense"
