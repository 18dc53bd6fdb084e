"""pip path for semnerf_ros (the colcon path uses package.xml + CMakeLists.txt instead).

    pip install --no-build-isolation -e .      # what scripts/setup.sh runs

The ``build`` step first runs ``build_interfaces`` (scripts/build_interfaces.py): it generates and
compiles the package's ROS 2 interfaces (msg/, srv/) with CMake against the ROS 2 wheels of the
running environment and installs them into it, so that ``semnerf_ros.msg`` / ``semnerf_ros.srv``
import next to the (editable) Python code. ``--no-build-isolation`` is required: the interface
build must see this environment's ROS 2 wheels. Set SEMNERF_SKIP_INTERFACES=1 to skip it.
"""
import os
import re
import subprocess
import sys
from pathlib import Path

from setuptools import Command, find_packages, setup
from setuptools.command.build import build

ROOT = Path(__file__).resolve().parent

#: Console tools (every main() is in semnerf_ros/cli/): the same functions are installed for `ros2 run`
#: by CMakeLists.txt (scripts/<name>).
CONSOLE_SCRIPTS = [
    "semnerf-make-scene = semnerf_ros.cli.make_scene:main",
    "semnerf-train = semnerf_ros.cli.train:main",
    "semnerf-mesh = semnerf_ros.cli.mesh:main",
    "semnerf_node = semnerf_ros.cli.node:main",
    "semnerf_lifecycle_node = semnerf_ros.cli.lifecycle_node:main",
    "semnerf-play = semnerf_ros.cli.play:main",
    "semnerf-demo = semnerf_ros.cli.demo:main",
]


def read_version():
    """The package version, from semnerf_ros/__init__.py (package.xml carries the same)."""
    text = (ROOT / "semnerf_ros" / "__init__.py").read_text()
    match = re.search(r'^__version__\s*=\s*["\']([^"\']+)["\']', text, re.M)
    if not match:
        raise RuntimeError("semnerf_ros/__init__.py defines no __version__")
    return match.group(1)


def read_requirements():
    """requirements.txt -> (install_requires, extras_require); the '# --- Tests ---' section is extra 'test'."""
    install, extras, section = [], {"test": []}, ""
    for raw in (ROOT / "requirements.txt").read_text().splitlines():
        header = re.match(r"#\s*---\s*(.+?)\s*---", raw.strip())
        if header:
            section = header.group(1).lower()
            continue
        line = raw.split("#", 1)[0].strip()
        if line:
            (extras["test"] if section == "tests" else install).append(line)
    return install, extras


class build_interfaces(Command):
    """Generate and compile the ROS 2 interfaces (msg/, srv/) into this environment."""

    description = "build the ROS 2 interfaces with CMake (scripts/build_interfaces.py)"
    user_options = [("force", "f", "rebuild even if up to date")]
    boolean_options = ["force"]

    def initialize_options(self):
        self.force = False

    def finalize_options(self):
        pass

    def run(self):
        if os.environ.get("SEMNERF_SKIP_INTERFACES") == "1":
            print("build_interfaces: skipped (SEMNERF_SKIP_INTERFACES=1)")
            return
        cmd = [sys.executable, str(ROOT / "scripts" / "build_interfaces.py")]
        if self.force:
            cmd.append("--force")
        if subprocess.run(cmd, cwd=ROOT).returncode != 0:
            raise SystemExit(
                "semnerf_ros: building the ROS 2 interfaces failed (see the [build_interfaces] "
                "messages above; run `python scripts/build_interfaces.py -v` for the full output). "
                "Install with `pip install --no-build-isolation ...` after the packages in "
                "requirements.txt, or simply run `bash scripts/setup.sh`.")


class build_with_interfaces(build):
    """``build`` that runs ``build_interfaces`` first (also used by editable installs)."""

    sub_commands = [("build_interfaces", None)] + build.sub_commands


INSTALL_REQUIRES, EXTRAS_REQUIRE = read_requirements()
# optional outputs of semnerf-train (without them it says what is off): the seed's TensorBoard log, mp4 videos
EXTRAS_REQUIRE.update({"tensorboard": ["tensorboard"], "video": ["imageio-ffmpeg"]})

setup(
    name="semnerf_ros",
    version=read_version(),
    description="Online Semantic-NeRF mapping for ROS 2 (RGB + pose + noisy labels -> denoised "
                "semantic images and a semantic mesh)",
    license="Apache-2.0",
    maintainer="semnerf_ros maintainers",
    maintainer_email="maintainers@semnerf-ros.org",
    python_requires=">=3.10",
    packages=find_packages(include=["semnerf_ros", "semnerf_ros.*"]),
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    entry_points={"console_scripts": CONSOLE_SCRIPTS},
    cmdclass={"build": build_with_interfaces, "build_interfaces": build_interfaces},
    zip_safe=False,
)
