"""Packaging checks: package.xml, CMakeLists.txt, setup.py console tools, and the package's own
ROS 2 interfaces (generated from msg/ and srv/, importable as semnerf_ros.msg / semnerf_ros.srv).
"""
import ast
import importlib
import importlib.metadata
import re
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
INTERFACE_FILES = (sorted((ROOT / "msg").glob("*.msg")) + sorted((ROOT / "srv").glob("*.srv"))
                   + sorted((ROOT / "action").glob("*.action")))

EXEC_DEPENDS = {
    "rclpy", "std_msgs", "std_srvs", "sensor_msgs", "geometry_msgs", "nav_msgs", "visualization_msgs",
    "rosidl_default_runtime", "python3-numpy", "python3-opencv", "python3-yaml", "python3-scipy",
    "python3-skimage", "python3-tqdm", "rcl_interfaces", "builtin_interfaces", "rosgraph_msgs", "diagnostic_msgs",
    "lifecycle_msgs", "ament_index_python", "tf2_ros_py", "tf2_msgs", "launch", "launch_ros", "rviz2",
}
BUILDTOOL_DEPENDS = {"ament_cmake", "ament_cmake_python", "rosidl_default_generators"}
INTERFACE_DEPENDS = {"std_msgs", "geometry_msgs", "sensor_msgs", "action_msgs"}
TEST_DEPENDS = {"ament_cmake_pytest", "python3-pytest"}


def _setup_py_constant(name):
    """A literal assigned at module level in setup.py (read without running setup())."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f"setup.py assigns no {name}")


def _parse_entry_point(spec):
    """'name = pkg.module:function' -> (name, module, function)."""
    match = re.fullmatch(r"\s*([\w.-]+)\s*=\s*([\w.]+):(\w+)\s*", spec)
    assert match, f"malformed console_scripts entry {spec!r}"
    return match.groups()


CONSOLE_SCRIPTS = _setup_py_constant("CONSOLE_SCRIPTS")


# ------------------------------------------------------------------------------------------------
# package.xml / CMakeLists.txt / setup.py
# ------------------------------------------------------------------------------------------------

def test_package_xml_is_format_3_with_the_declared_dependencies():
    from catkin_pkg.package import parse_package

    pkg = parse_package(str(ROOT / "package.xml"))
    pkg.validate()
    names = lambda deps: {dep.name for dep in deps}  # noqa: E731
    assert pkg.package_format == 3
    assert pkg.name == "semnerf_ros"
    assert pkg.get_build_type() == "ament_cmake"
    assert BUILDTOOL_DEPENDS <= names(pkg.buildtool_depends)
    assert "rosidl_interface_packages" in {group.name for group in pkg.member_of_groups}
    missing_exec = EXEC_DEPENDS - names(pkg.exec_depends)
    assert not missing_exec, f"package.xml lacks exec dependencies {sorted(missing_exec)}"
    assert INTERFACE_DEPENDS <= names(pkg.build_depends), "interface dependencies must be build deps too"
    assert TEST_DEPENDS <= names(pkg.test_depends)
    for maintainer in pkg.maintainers:
        assert re.fullmatch(r"[^@\s]+@[^@\s]+\.[a-z]{2,}", maintainer.email or ""), maintainer


def test_versions_agree_between_package_xml_and_python_package():
    from catkin_pkg.package import parse_package

    init = (ROOT / "semnerf_ros" / "__init__.py").read_text()
    version = re.search(r'^__version__\s*=\s*["\']([^"\']+)', init, re.M).group(1)
    assert parse_package(str(ROOT / "package.xml")).version == version


def test_cmakelists_generates_every_interface_file():
    cmake = (ROOT / "CMakeLists.txt").read_text()
    assert INTERFACE_FILES, "msg/ and srv/ hold no interface files"
    for path in INTERFACE_FILES:
        rel = path.relative_to(ROOT).as_posix()
        assert f'"{rel}"' in cmake, f"CMakeLists.txt does not pass {rel} to rosidl_generate_interfaces"
    assert re.search(r"DEPENDENCIES\s+std_msgs\s+geometry_msgs\s+sensor_msgs", cmake)


@pytest.mark.parametrize("spec", CONSOLE_SCRIPTS, ids=lambda s: s.split("=")[0].strip())
def test_ros2_run_launcher_matches_console_script(spec):
    """`ros2 run semnerf_ros <name>` runs scripts/<name>, which must call the same function."""
    name, module, function = _parse_entry_point(spec)
    launcher = ROOT / "scripts" / name
    assert launcher.is_file(), f"no launcher scripts/{name} for `ros2 run`"
    assert launcher.stat().st_mode & 0o111, f"scripts/{name} is not executable"
    assert f"from {module} import {function}" in launcher.read_text()
    assert f"scripts/{name}" in (ROOT / "CMakeLists.txt").read_text(), f"CMakeLists.txt does not install scripts/{name}"


@pytest.mark.parametrize("spec", CONSOLE_SCRIPTS, ids=lambda s: s.split("=")[0].strip())
def test_console_entry_point_resolves(spec):
    """Every declared tool exists and imports: a missing one fails (it would fail for users too)."""
    name, module, function = _parse_entry_point(spec)
    base = ROOT.joinpath(*module.split("."))
    assert base.with_suffix(".py").is_file() or (base / "__init__.py").is_file(), \
        f"entry point {name} names {module}, which does not exist"
    loaded = importlib.import_module(module)
    assert callable(getattr(loaded, function, None)), f"{module} has no function {function}() for {name}"


def test_installed_console_scripts_match_setup_py():
    """When installed with pip, the environment's console scripts are the ones setup.py declares."""
    try:
        dist = importlib.metadata.distribution("semnerf_ros")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("semnerf_ros is not pip-installed in this environment")
    installed = {ep.name: ep.value for ep in dist.entry_points if ep.group == "console_scripts"}
    if not installed:
        pytest.skip("this install declares no console scripts (colcon install: tools are in lib/semnerf_ros)")
    declared = {name: f"{module}:{function}" for name, module, function in map(_parse_entry_point, CONSOLE_SCRIPTS)}
    assert installed == declared, "stale install: re-run `bash scripts/setup.sh`"


# ------------------------------------------------------------------------------------------------
# Generated interfaces
# ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def interfaces():
    try:
        msg = importlib.import_module("semnerf_ros.msg")
        srv = importlib.import_module("semnerf_ros.srv")
    except ImportError as err:
        pytest.fail(f"the generated interfaces do not import ({err}); build them with "
                    "`python scripts/build_interfaces.py` (pip path) or `colcon build` (ROS workspace)")
    return msg, srv


_IDL_PRIMITIVES = {"bool": "boolean", "byte": "octet", "char": "uint8", "float32": "float", "float64": "double"}
_PRIMITIVES = set(_IDL_PRIMITIVES) | {"string", "wstring"} | {
    f"{sign}int{bits}" for sign in ("", "u") for bits in (8, 16, 32, 64)}


def _idl_type(msg_type):
    """A .msg field type as rosidl_generator_py's get_fields_and_field_types() spells it."""
    match = re.fullmatch(r"([\w/]+)(<=\d+)?(\[(<=)?(\d*)\])?", msg_type)
    assert match, f"unparsed field type {msg_type!r}"
    base, bound, array, array_bounded, size = match.groups()
    if base not in _PRIMITIVES and "/" not in base:
        base = f"semnerf_ros/{base}"  # a message of this package
    base = _IDL_PRIMITIVES.get(base, base)
    if bound:
        base = f"{base}<{bound[2:]}>"
    if array is None:
        return base
    if size and not array_bounded:
        return f"{base}[{size}]"
    return f"sequence<{base}, {size}>" if size else f"sequence<{base}>"


def _fields_of(definition):
    """{name: idl type} of one .msg section (constants and comments skipped)."""
    fields = {}
    for line in definition.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        field_type, rest = line.split(None, 1)
        name, is_constant = re.match(r"(\w+)\s*(=)?", rest).groups()
        if not is_constant:  # `type NAME=value` declares a constant, not a field
            fields[name] = _idl_type(field_type)
    return fields


@pytest.mark.parametrize("path", INTERFACE_FILES, ids=lambda p: p.name)
def test_generated_interfaces_match_their_definitions(interfaces, path):
    """Catches a stale build: every .msg/.srv field exists in the generated class with its type."""
    msg, srv = interfaces
    if path.suffix == ".msg":
        pairs = [(getattr(msg, path.stem), path.read_text())]
    elif path.suffix == ".action":
        action = getattr(importlib.import_module("semnerf_ros.action"), path.stem)
        goal, result, feedback = path.read_text().split("\n---", 2)
        pairs = [(action.Goal, goal), (action.Result, result), (action.Feedback, feedback)]
    else:
        service = getattr(srv, path.stem)
        request, response = path.read_text().split("\n---", 1)
        pairs = [(service.Request, request), (service.Response, response)]
    for cls, definition in pairs:
        assert cls.get_fields_and_field_types() == _fields_of(definition), f"{cls.__name__} is stale; rebuild"


def _full_status(msg):
    status = msg.MapStatus()
    status.header.frame_id = "map"
    status.header.stamp.sec, status.header.stamp.nanosec = 12, 345
    status.step, status.keyframes, status.max_keyframes = 1000, 17, 64
    status.training, status.device = True, "cpu"
    status.loss, status.loss_rgb, status.loss_semantic, status.loss_depth = 0.5, 0.25, 0.125, 0.0
    status.psnr, status.iterations_per_second, status.gpu_memory_mb = 24.5, 3.0, 0.0
    status.topics = ["/camera/rgb", "/camera/labels"]
    status.received, status.dropped = [10, 9], [0, 1]
    status.frames_synced, status.frames_rejected, status.keyframes_added = 9, 1, 8
    status.reject_reasons, status.reject_counts = ["unsupported_encoding"], [1]
    return status


def test_map_status_round_trips_through_rclpy_serialization(interfaces):
    from rclpy.serialization import deserialize_message, serialize_message

    msg, _ = interfaces
    status = _full_status(msg)
    data = serialize_message(status)
    assert len(data) > 100
    back = deserialize_message(data, msg.MapStatus)
    assert back == status
    assert back.topics == ["/camera/rgb", "/camera/labels"] and list(back.dropped) == [0, 1]
    assert deserialize_message(serialize_message(msg.MapStatus()), msg.MapStatus) == msg.MapStatus()


def test_export_mesh_request_and_response_construct_with_their_fields(interfaces):
    _, srv = interfaces
    request = srv.ExportMesh.Request(path="/tmp/map.ply", format="ply", semantic_colors=True,
                                     resolution=256, density_threshold=10.0)
    assert (request.path, request.format, request.semantic_colors) == ("/tmp/map.ply", "ply", True)
    assert (request.resolution, request.density_threshold) == (256, 10.0)
    response = srv.ExportMesh.Response(success=True, message="wrote 12 faces", written_path="/tmp/map.ply",
                                       vertex_count=8, face_count=12)
    assert (response.success, response.vertex_count, response.face_count) == (True, 8, 12)
    assert response.written_path == "/tmp/map.ply" and response.message == "wrote 12 faces"
    with pytest.raises(AssertionError):  # typed fields: uint32 rejects -1 when checks are on
        srv.ExportMesh.Request(resolution=-1, check_fields=True)


def test_render_view_response_carries_images(interfaces):
    from rclpy.serialization import deserialize_message, serialize_message

    _, srv = interfaces
    response = srv.RenderView.Response(success=True)
    response.semantic.height, response.semantic.width, response.semantic.encoding = 2, 3, "mono8"
    response.semantic.step, response.semantic.data = 3, bytes(range(6))
    back = deserialize_message(serialize_message(response), srv.RenderView.Response)
    assert back.semantic.encoding == "mono8" and bytes(back.semantic.data) == bytes(range(6))
    request = srv.RenderView.Request(scale=0.5)
    request.pose.header.frame_id = "map"
    request.camera_info.k[0] = 525.0
    assert deserialize_message(serialize_message(request), srv.RenderView.Request) == request


@pytest.fixture(scope="module")
def status_node(interfaces):
    """The real ``semnerf_node`` (in process, its own DDS domain) around a tiny real Mapper that
    has 4 keyframes and 3 training steps, training paused so that its counters stay put; plus a
    client node.  Yields (node, client, mapper)."""
    import os
    import threading

    import rclpy
    import yaml
    from boxroom import NUM_CLASSES, TINY_ENGINE, box_frames
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.parameter import Parameter

    from semnerf_ros.engine.config import make_config
    from semnerf_ros.engine.mapper import Mapper
    from semnerf_ros.ros.node import SemNerfNode

    mapper = Mapper(make_config(yaml.safe_load(TINY_ENGINE)), NUM_CLASSES, device="cpu")
    for f in box_frames(4, 32, 24):
        mapper.add_frame(f)
    mapper.step(3)
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=40 + (os.getpid() * 13) % 150)
    node = SemNerfNode(mapper=mapper, context=context, parameter_overrides=[
        Parameter(k, value=v) for k, v in dict(num_classes=NUM_CLASSES, training_enabled=False, status_rate=10.0,
                                               publish_rate=0.0, world_frame="world").items()])
    client = rclpy.create_node(f"semnerf_test_package_{uuid.uuid4().hex[:8]}", context=context)
    executor = MultiThreadedExecutor(num_threads=3, context=context)
    executor.add_node(node)
    executor.add_node(client)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        yield node, client, mapper
    finally:
        node.close()
        executor.shutdown(timeout_sec=2.0)
        node.destroy_node()
        client.destroy_node()
        rclpy.shutdown(context=context)
        spinner.join(2.0)


def _check_status(status, mapper):
    st = mapper.stats()
    assert status.header.frame_id == "world"
    assert (status.step, status.keyframes, status.max_keyframes) == (3, 4, 200)   # the engine default bound
    assert st["max_keyframes"] == 200
    assert status.training is False and status.device == "cpu"
    assert status.loss == pytest.approx(st["loss"]) and status.psnr == pytest.approx(st["psnr"])
    assert status.loss_semantic == pytest.approx(st["loss_semantic"]) and status.loss > 0
    assert list(status.topics) == ["/rgb", "/labels", "/pose", "/camera_info"]
    assert list(status.received) == [0, 0, 0, 0] and status.frames_synced == 0


def test_map_status_published_by_the_node(status_node):
    """``~/status`` (MapStatus at status_rate) from the node itself, with the mapper's counters."""
    msg = importlib.import_module("semnerf_ros.msg")
    node, client, mapper = status_node
    received = []
    client.create_subscription(msg.MapStatus, f"/{node.get_name()}/status", received.append, 10)
    deadline = time.monotonic() + 15.0
    while not received and time.monotonic() < deadline:
        time.sleep(0.05)
    assert received, "no MapStatus on ~/status within 15 s"
    _check_status(received[-1], mapper)


def test_get_status_service_of_the_node(status_node):
    """``~/get_status`` answered by the node's own handler (not one written here)."""
    srv = importlib.import_module("semnerf_ros.srv")
    node, client, mapper = status_node
    cli = client.create_client(srv.GetStatus, f"/{node.get_name()}/get_status")
    assert cli.wait_for_service(timeout_sec=15.0), "~/get_status did not appear within 15 s"
    future = cli.call_async(srv.GetStatus.Request())
    deadline = time.monotonic() + 15.0
    while not future.done() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert future.done(), "no GetStatus response within 15 s"
    _check_status(future.result().status, mapper)
    # the answer follows the map: one more step shows up in the next call
    mapper.step()
    future = cli.call_async(srv.GetStatus.Request())
    deadline = time.monotonic() + 15.0
    while not future.done() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert future.result().status.step == 4


def test_package_xml_names_every_ros_package_the_code_imports():
    """Every ROS package imported by semnerf_ros (at module top or as an optional import) is an
    exec_depend (tf2_ros's Python package is the tf2_ros_py key)."""
    from catkin_pkg.package import parse_package

    deps = {d.name for d in parse_package(str(ROOT / "package.xml")).exec_depends}
    deps |= {d.name for d in parse_package(str(ROOT / "package.xml")).build_depends}
    ros_like = re.compile(r"^(rclpy|ament_index_python|tf2_ros|[a-z0-9_]+_(msgs|srvs|interfaces))$")
    keys = {"tf2_ros": "tf2_ros_py"}
    imported = set()
    for path in (ROOT / "semnerf_ros").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else []
            imported |= {n.split(".")[0] for n in names if ros_like.match(n.split(".")[0])}
    assert {"rclpy", "diagnostic_msgs", "rosgraph_msgs", "tf2_msgs", "tf2_ros"} <= imported
    missing = {keys.get(n, n) for n in imported} - deps
    assert not missing, f"imported but not in package.xml: {sorted(missing)}"
