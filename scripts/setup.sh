#!/usr/bin/env bash
# One-command setup of semnerf_ros (pip path), from the repository root:
#
#     bash scripts/setup.sh
#
# On Debian/Ubuntu with Python >= 3.10 it
#   1. picks a Python >= 3.10,
#   2. apt-installs what is missing of: libusb-1.0-0 (open3d-cpu), a C/C++ compiler and make
#      (the interface build), the Python headers and venv module (sudo only when not root),
#   3. creates the virtualenv .venv in the repository (kept if it exists),
#   4. updates pip/setuptools,
#   5. installs PyTorch (torch==2.13.0 by default; see SEMNERF_TORCH below),
#   6. installs requirements.txt (ROS 2 Kilted wheels, interface-build wheels, numerics, pytest),
#   7. builds the package's ROS 2 interfaces (scripts/build_interfaces.py),
#   8. installs semnerf_ros itself, editable (pip install --no-build-isolation -e .),
#   9. checks that everything imports.
# Re-running is safe and fast: every step skips what is already done.
#
# Environment:
#   SEMNERF_TORCH  pip arguments for PyTorch, e.g. for a CUDA build matching your driver:
#                    SEMNERF_TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
#                  Unset: keep a torch already installed in the venv, else install torch==2.13.0.
#   SEMNERF_VENV   virtualenv to create/use (default: <repo>/.venv)
#   PYTHON         base interpreter for creating the venv (default: first python3.x >= 3.10 found)
set -Eeuo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SEMNERF_VENV:-$REPO_ROOT/.venv}"
TORCH_DEFAULT="torch==2.13.0"
STEP="start"
T_START=$(date +%s)

step() {
    STEP="$1"
    printf '\n==> [%s] %s\n' "$(date +%H:%M:%S)" "$STEP"
}
die() {
    printf 'ERROR: %s\n' "$*" >&2
    exit 1
}
on_exit() {
    local rc=$?
    if [ "$rc" -ne 0 ]; then
        printf '\nsetup FAILED in step "%s" (exit code %s); fix the error above and re-run: bash scripts/setup.sh\n' \
            "$STEP" "$rc" >&2
    fi
}
trap on_exit EXIT

py_version_ok() {  # $1: interpreter; true when it is Python >= 3.10
    "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' 2>/dev/null
}

# ----------------------------------------------------------------------------------------------
step "1/9 Python >= 3.10"
if [ -x "$VENV/bin/python" ]; then
    py_version_ok "$VENV/bin/python" \
        || die "$VENV exists but its Python is older than 3.10; remove it (rm -rf $VENV) and re-run"
    BASE_PY="$VENV/bin/python"
    echo "using the existing virtualenv $VENV"
else
    BASE_PY="${PYTHON:-}"
    if [ -z "$BASE_PY" ]; then
        for candidate in python3 python3.13 python3.12 python3.11 python3.10; do
            if command -v "$candidate" >/dev/null && py_version_ok "$candidate"; then
                BASE_PY="$(command -v "$candidate")"
                break
            fi
        done
    fi
    [ -n "$BASE_PY" ] || die "no Python >= 3.10 found on PATH (install python3, or set PYTHON=/path/to/python3.x)"
    py_version_ok "$BASE_PY" || die "$BASE_PY is not Python >= 3.10"
fi
PY_MM="$("$BASE_PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
echo "Python $PY_MM ($BASE_PY)"

# ----------------------------------------------------------------------------------------------
step "2/9 system packages (libusb-1.0-0, C/C++ compiler, make, Python headers, venv)"
missing=()
shared_libs="$(/sbin/ldconfig -p 2>/dev/null || ldconfig -p 2>/dev/null || true)"
grep -q 'libusb-1\.0\.so\.0' <<<"$shared_libs" || missing+=(libusb-1.0-0)
command -v c++ >/dev/null && command -v cc >/dev/null || missing+=(g++)
command -v make >/dev/null || command -v ninja >/dev/null || missing+=(make)
if ! "$BASE_PY" -c 'import os, sys, sysconfig; sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")) else 1)'; then
    missing+=("python${PY_MM}-dev")
fi
if [ ! -x "$VENV/bin/python" ] && ! "$BASE_PY" -c 'import ensurepip, venv' 2>/dev/null; then
    missing+=("python${PY_MM}-venv")
fi
if [ "${#missing[@]}" -eq 0 ]; then
    echo "all present"
else
    echo "missing: ${missing[*]}"
    command -v apt-get >/dev/null \
        || die "apt-get is not available; install the equivalents of: ${missing[*]} with your package manager, then re-run"
    if [ "$(id -u)" -eq 0 ]; then
        SUDO=()
    elif command -v sudo >/dev/null; then
        SUDO=(sudo)
    else
        die "not root and sudo is not available; as root run: apt-get install -y ${missing[*]}"
    fi
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# ----------------------------------------------------------------------------------------------
step "3/9 virtualenv $VENV"
if [ -x "$VENV/bin/python" ]; then
    echo "exists"
else
    "$BASE_PY" -m venv "$VENV"
    echo "created"
fi
touch "$VENV/COLCON_IGNORE"  # the venv's share/*/package.xml must never look like workspace packages
VPY="$VENV/bin/python"
pip_install() { "$VPY" -m pip install --progress-bar off "$@"; }

# ----------------------------------------------------------------------------------------------
step "4/9 pip and setuptools"
pip_install -q "pip>=23.1" "setuptools>=68" wheel

# ----------------------------------------------------------------------------------------------
step "5/9 PyTorch"
installed_torch="$("$VPY" -c 'import importlib.metadata as m; print(m.version("torch"))' 2>/dev/null || true)"
if [ -n "${SEMNERF_TORCH:-}" ]; then
    echo "installing from SEMNERF_TORCH: $SEMNERF_TORCH"
    # shellcheck disable=SC2086  # word splitting wanted: SEMNERF_TORCH may carry pip options
    pip_install $SEMNERF_TORCH
elif [ -n "$installed_torch" ]; then
    echo "keeping the installed torch $installed_torch (set SEMNERF_TORCH to change it)"
else
    if command -v nvidia-smi >/dev/null; then
        echo "note: an NVIDIA driver is present; installing $TORCH_DEFAULT. For a specific CUDA build,"
        echo "      re-run with SEMNERF_TORCH='torch==2.13.0 --index-url https://download.pytorch.org/whl/cuXXX'"
    fi
    pip_install "$TORCH_DEFAULT"
fi

# ----------------------------------------------------------------------------------------------
step "6/9 Python dependencies (requirements.txt)"
pip_install -r "$REPO_ROOT/requirements.txt" 2>&1 | { grep -v '^Requirement already satisfied' || true; }

# ----------------------------------------------------------------------------------------------
step "7/9 ROS 2 interfaces (msg/, srv/)"
"$VPY" "$REPO_ROOT/scripts/build_interfaces.py"

# ----------------------------------------------------------------------------------------------
step "8/9 semnerf_ros (editable)"
# Skipped when this checkout is already installed editable and setup.py, pyproject.toml and
# requirements.txt are unchanged since (the stamp is written only after a successful install).
install_key="$(cat "$REPO_ROOT/setup.py" "$REPO_ROOT/pyproject.toml" "$REPO_ROOT/requirements.txt" | sha256sum | cut -d' ' -f1)"
install_stamp="$VENV/.semnerf_ros_install_key"
if [ -f "$install_stamp" ] && [ "$(cat "$install_stamp")" = "$install_key" ] \
   && REPO_URL="file://$REPO_ROOT" "$VPY" - <<'EOF'
import importlib.metadata, json, os, sys
try:
    info = json.loads(importlib.metadata.distribution("semnerf_ros").read_text("direct_url.json") or "{}")
except importlib.metadata.PackageNotFoundError:
    sys.exit(1)
sys.exit(0 if info.get("dir_info", {}).get("editable") and info.get("url") == os.environ["REPO_URL"] else 1)
EOF
then
    echo "already installed (editable, from $REPO_ROOT; packaging files unchanged)"
else
    rm -f "$install_stamp"
    pip_install -q --no-build-isolation -e "$REPO_ROOT"
    echo "$install_key" > "$install_stamp"
    echo "installed (editable)"
fi

# ----------------------------------------------------------------------------------------------
step "9/9 import check"
(cd / && "$VPY" - <<'EOF'
import importlib
import semnerf_ros
from semnerf_ros.msg import MapStatus
from semnerf_ros.srv import ExportMesh
versions = {}
for name in ("torch", "numpy", "scipy", "skimage", "cv2", "open3d", "rosbags", "yaml", "tqdm", "rclpy", "pytest"):
    module = importlib.import_module(name)
    versions[name] = getattr(module, "__version__", "ok")
import torch
print("semnerf_ros %s from %s" % (semnerf_ros.__version__, semnerf_ros.__path__[0]))
print("interfaces: semnerf_ros.msg.MapStatus, semnerf_ros.srv.ExportMesh import")
print(", ".join("%s %s" % kv for kv in versions.items()))
print("torch device: %s" % ("cuda (%s)" % torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"))
EOF
)

printf '\nsetup complete in %ss. Run the tests with:\n    %s -m pytest test -q\n' \
    "$(( $(date +%s) - T_START ))" "${VPY#"$REPO_ROOT"/}"
