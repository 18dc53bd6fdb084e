"""Launch files, node parameter file and RViz config.

With ROS 2 ``launch`` / ``launch_ros`` installed (a full ROS 2 install, e.g.
under colcon) the launch descriptions are built and inspected; without them
(pip-only environments: these packages are not on PyPI) those tests skip and
the files are still compiled and checked structurally.
"""
import ast
import importlib.util
import py_compile
from pathlib import Path

import pytest
import yaml

from semnerf_ros.bridge.params import PARAMS, SPECS, check_value, check_values

ROOT = Path(__file__).resolve().parents[1]
LAUNCH_FILES = [ROOT / "launch" / "semnerf.launch.py", ROOT / "launch" / "replay.launch.py"]
NODE_INPUTS = {"rgb", "camera_info", "pose", "labels", "depth"}


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_files_compile(path, tmp_path):
    py_compile.compile(str(path), cfile=str(tmp_path / "x.pyc"), doraise=True)
    tree = ast.parse(path.read_text())
    funcs = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert "generate_launch_description" in funcs


def _declared_arguments(path):
    """Names of DeclareLaunchArgument(...) calls with a literal first argument, plus
    those built from the module-level tuples of (name, default, ...)."""
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "DeclareLaunchArgument" \
                and node.args and isinstance(node.args[0], ast.Constant):
            names.add(node.args[0].value)
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Tuple):
            try:
                table = ast.literal_eval(node.value)
            except ValueError:
                continue
            names.update(row[0] for row in table if isinstance(row, tuple) and row)
    return names


def test_launch_arguments_structurally():
    node_args = _declared_arguments(LAUNCH_FILES[0])
    assert {"params_file", "use_sim_time", "rviz", "rviz_config", "rgb_topic", "camera_info_topic",
            "pose_topic", "labels_topic", "depth_topic", "namespace", "executable", "pose_source"} <= node_args
    replay_args = _declared_arguments(LAUNCH_FILES[1])
    assert {"bag", "rate", "loop", "delay", "use_sim_time", "exit_when_done", "namespace"} <= replay_args
    # every node argument that replay passes on is declared by semnerf.launch.py
    assert (replay_args - {"bag", "rate", "loop", "delay", "exit_when_done"}) <= node_args
    # the remaps target exactly the node's input names
    tree = ast.parse(LAUNCH_FILES[0].read_text())
    table = next(ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign)
                 and getattr(n.targets[0], "id", "") == "TOPIC_ARGUMENTS")
    assert {row[2] for row in table} == NODE_INPUTS
    from semnerf_ros.bags import writer as bag_writer

    assert {row[1] for row in table} == {bag_writer.TOPIC_RGB, bag_writer.TOPIC_INFO, bag_writer.TOPIC_POSE,
                                         bag_writer.TOPIC_LABELS, bag_writer.TOPIC_DEPTH}


NOT_INSTALLABLE = ("launch / launch_ros are not installable from PyPI (full ROS 2 installs only); the launch "
                   "files' topics and parameters are checked without them in this module")


def _load(path):
    spec = importlib.util.spec_from_file_location(path.stem.replace(".", "_"), path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_semnerf_launch_description():
    launch = pytest.importorskip("launch", reason=NOT_INSTALLABLE)
    launch_ros = pytest.importorskip("launch_ros", reason=NOT_INSTALLABLE)
    ld = _load(LAUNCH_FILES[0]).generate_launch_description()
    assert isinstance(ld, launch.LaunchDescription)
    args = {a.name for a in ld.get_launch_arguments()}
    assert {"params_file", "rviz", "rgb_topic", "labels_topic", "pose_topic", "camera_info_topic",
            "depth_topic", "use_sim_time"} <= args
    nodes = [e for e in ld.entities if isinstance(e, launch_ros.actions.Node)]
    assert len(nodes) == 1   # semnerf_node; rviz2 comes from an OpaqueFunction (namespaced config)
    assert any(isinstance(e, launch.actions.OpaqueFunction) for e in ld.entities)


def test_replay_launch_description():
    launch = pytest.importorskip("launch", reason=NOT_INSTALLABLE)
    pytest.importorskip("launch_ros", reason=NOT_INSTALLABLE)
    ld = _load(LAUNCH_FILES[1]).generate_launch_description()
    assert isinstance(ld, launch.LaunchDescription)
    args = {a.name: a for a in ld.get_launch_arguments()}
    assert "bag" in args and not args["bag"].default_value   # required
    assert any(isinstance(e, launch.actions.IncludeLaunchDescription) for e in ld.entities)
    assert any(isinstance(e, launch.actions.OpaqueFunction) for e in ld.entities)


def test_params_file_is_valid_for_the_node():
    data = yaml.safe_load((ROOT / "config" / "semnerf.yaml").read_text())
    params = data["/**"]["ros__parameters"]
    unknown = set(params) - set(SPECS)
    assert not unknown, f"unknown parameters in config/semnerf.yaml: {unknown}"
    for name, value in params.items():
        spec = SPECS[name]
        if spec.kind == "double" and isinstance(value, int):
            pytest.fail(f"{name}: write {value}.0 (rcl would read an integer for a double parameter)")
        assert check_value(spec, value) is None, check_value(spec, value)
    assert check_values({**{p.name: p.default for p in PARAMS}, **params}) == []
    from semnerf_ros.datasets.synthetic import CLASS_NAMES

    assert params["class_names"] == CLASS_NAMES and params["num_classes"] == len(CLASS_NAMES)


def test_rviz_config():
    cfg = yaml.safe_load((ROOT / "config" / "semnerf.rviz").read_text())
    vm = cfg["Visualization Manager"]
    assert vm["Global Options"]["Fixed Frame"] == "map"
    displays = {d["Class"]: [] for d in vm["Displays"]}
    for d in vm["Displays"]:
        displays[d["Class"]].append(d.get("Topic", {}).get("Value"))
    assert set(displays["rviz_default_plugins/Image"]) >= {"/camera/color/image_raw",
                                                           "/semnerf_node/semantic_color",
                                                           "/semnerf_node/uncertainty"}
    assert displays["rviz_default_plugins/MarkerArray"] == ["/semnerf_node/mesh"]


def test_launch_node_takes_namespace_executable_and_pose_source():
    """Structural (``launch`` is not installable here): the node action passes the namespace,
    the executable and pose_source through, and the executables exist."""
    text = LAUNCH_FILES[0].read_text()
    assert 'namespace=LaunchConfiguration("namespace")' in text
    assert 'executable=LaunchConfiguration("executable")' in text
    assert '"pose_source": LaunchConfiguration("pose_source")' in text
    assert "namespaced_rviz_config" in text
    for exe in ("semnerf_node", "semnerf_lifecycle_node"):
        assert (ROOT / "scripts" / exe).is_file()
        assert f"scripts/{exe}" in (ROOT / "CMakeLists.txt").read_text()


def test_rviz_config_under_a_namespace():
    from semnerf_ros.bridge.rviz_config import namespaced_rviz_config

    text = (ROOT / "config" / "semnerf.rviz").read_text()
    assert namespaced_rviz_config(text, "") == text and namespaced_rviz_config(text, "/") == text
    out = yaml.safe_load(namespaced_rviz_config(text, "/robot1/"))
    topics = [d.get("Topic", {}).get("Value") for d in out["Visualization Manager"]["Displays"]]
    assert "/robot1/semnerf_node/semantic_color" in topics and "/robot1/semnerf_node/mesh" in topics
    assert "/camera/color/image_raw" in topics                      # inputs stay absolute
    assert not [t for t in topics if t and t.startswith("/semnerf_node/")]
    nested = namespaced_rviz_config(text, "fleet/robot2")
    assert "/fleet/robot2/semnerf_node/uncertainty" in nested
