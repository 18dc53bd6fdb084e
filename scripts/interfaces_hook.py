"""Serve semnerf_ros's generated ROS 2 interfaces to an editable / source-tree ``semnerf_ros``.

pip path only. ``scripts/build_interfaces.py`` copies this file to
``<site-packages>/_semnerf_ros_interfaces/__init__.py``, puts the generated Python interface code
next to it (``_semnerf_ros_interfaces/semnerf_ros/{msg,srv}/`` and the typesupport extension
modules ``semnerf_ros_s__rosidl_typesupport_*.so``) and writes ``_semnerf_ros_interfaces.pth``,
which imports this module at interpreter start-up.

The module appends one finder to ``sys.meta_path``. It answers only for ``semnerf_ros.msg``,
``semnerf_ros.srv``, ``semnerf_ros.action`` and ``semnerf_ros.semnerf_ros_s__*`` (the modules that
rosidl generates), and
only when the normal import machinery did not find them in ``semnerf_ros.__path__`` first; so the
hand-written ``semnerf_ros`` stays wherever it is (the git checkout, editable) and a colcon install,
which has the generated modules inside its own ``semnerf_ros``, is never affected. This is the
same mechanism setuptools uses for its own editable installs.
"""
import importlib.abc
import importlib.machinery
import os
import sys

PACKAGE = "semnerf_ros"
#: Directory holding the generated ``msg/``, ``srv/`` and typesupport modules of ``semnerf_ros``.
GENERATED_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), PACKAGE)

_SUBPACKAGES = frozenset({PACKAGE + ".msg", PACKAGE + ".srv", PACKAGE + ".action"})
_TYPESUPPORT_PREFIX = PACKAGE + "." + PACKAGE + "_s__"


class GeneratedInterfacesFinder(importlib.abc.MetaPathFinder):
    """Find ``semnerf_ros.msg``, ``semnerf_ros.srv`` and the typesupport modules in GENERATED_DIR."""

    marker = "semnerf_ros generated interfaces"

    def find_spec(self, fullname, path=None, target=None):
        if fullname in _SUBPACKAGES or (
            fullname.startswith(_TYPESUPPORT_PREFIX) and "." not in fullname[len(PACKAGE) + 1:]
        ):
            return importlib.machinery.PathFinder.find_spec(fullname, [GENERATED_DIR])
        return None


def install():
    """Append the finder to ``sys.meta_path`` (once)."""
    for finder in sys.meta_path:
        if getattr(finder, "marker", None) == GeneratedInterfacesFinder.marker:
            return
    sys.meta_path.append(GeneratedInterfacesFinder())


install()
