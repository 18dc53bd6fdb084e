"""Defaults are written once: the parameter files are generated from the parameter table, and the
parameters that set engine keys take their defaults from the engine's."""
from __future__ import annotations

from semnerf_ros.bridge.params import PARAMS, SPECS, engine_overrides, params_yaml
from semnerf_ros.cli import params_files
from semnerf_ros.engine.config import DEFAULTS


def test_config_files_are_the_generated_ones(tmp_path):
    """A stale file fails here: regenerate with `python -m semnerf_ros.cli.params_files`."""
    assert params_files.main(["--check"]) == 0
    for name, text in params_files.render_files().items():
        assert (params_files.CONFIG_DIR / name).read_text() == text, name
    # --check really compares: a changed file is reported and not rewritten
    (tmp_path / "semnerf.yaml").write_text("# edited by hand\n")
    assert params_files.main(["--check", "--config-dir", str(tmp_path)]) == 1
    assert (tmp_path / "semnerf.yaml").read_text() == "# edited by hand\n"
    assert params_files.main(["--config-dir", str(tmp_path)]) == 0
    assert params_files.main(["--check", "--config-dir", str(tmp_path)]) == 0


def test_node_defaults_give_the_engine_defaults():
    values = {p.name: p.default for p in PARAMS}
    ov = engine_overrides(values)
    for key, value in ov["mapper"].items():
        assert value == DEFAULTS["mapper"][key], key
    assert ov["experiment"]["device"] == DEFAULTS["experiment"]["device"]


def test_params_yaml_lists_every_parameter_once_with_its_description():
    text = params_yaml({"num_classes": 5}, "# header\n")
    for p in PARAMS:
        (line,) = [ln for ln in text.splitlines() if ln.strip().startswith(f"{p.name}:")]
        assert line.endswith(p.description), line
    assert "num_classes: 5 " in text and text.startswith("# header\n/**:\n  ros__parameters:\n")
    assert "publish_rate: 2.0 " in text                       # doubles keep their decimal point
    try:
        params_yaml({"nope": 1}, "#\n")
    except ValueError as exc:
        assert "nope" in str(exc)
    else:
        raise AssertionError("an unknown parameter was written")
    assert SPECS["num_classes"].default == 0
