"""Reading rosbag2 files without rclpy (``rosbags``): messages in log-time order, the
bag's ``custom_data``, the message classes of recorded types, and the player's command-line
helpers (``--remap``, ``--ros-args`` blocks)."""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Iterator, Optional

import yaml
from rosbags.rosbag2 import Reader
from rosbags.typesys import Stores, get_typestore


class PlayerError(RuntimeError):
    """A bag or an option the player cannot use."""


def message_class(msgtype: str):
    """The rclpy message class of a ROS 2 type name ``pkg/msg/Name``."""
    parts = msgtype.split("/")
    if len(parts) != 3:
        raise PlayerError(f"not a ROS 2 message type name: {msgtype!r}")
    pkg, sub, name = parts
    try:
        return getattr(importlib.import_module(f"{pkg}.{sub}"), name)
    except (ImportError, AttributeError) as exc:
        raise PlayerError(f"message type {msgtype} is not available in this Python "
                          f"environment: {exc}") from exc


def parse_remaps(remaps: list) -> dict:
    out = {}
    for r in remaps or []:
        if ":=" not in r:
            raise PlayerError(f"--remap expects FROM:=TO, got {r!r}")
        a, b = r.split(":=", 1)
        if not a or not b:
            raise PlayerError(f"--remap expects FROM:=TO, got {r!r}")
        out[a] = b
    return out


def split_ros_args(argv: list) -> tuple[list, list]:
    """Split a command line into the player's own arguments and the ROS ones
    (each ``--ros-args ...`` block, up to a ``--`` or the end)."""
    own, ros, inside = [], [], False
    for a in argv:
        if a == "--ros-args":
            inside = True
            ros.append(a)
        elif inside and a == "--":
            inside = False
        elif inside:
            ros.append(a)
        else:
            own.append(a)
    return own, ros



def typestore():
    """rosbags' ROS 2 typestore of the newest distribution it knows (Kilted,
    else Jazzy, else its LATEST)."""
    for name in ("ROS2_KILTED", "ROS2_JAZZY", "LATEST"):
        if hasattr(Stores, name):
            return get_typestore(getattr(Stores, name))
    raise PlayerError("rosbags knows no ROS 2 typestore")  # pragma: no cover


def read_bag_messages(bag_path, topics: Optional[list] = None) -> Iterator[tuple]:
    """Yield ``(topic, msgtype, log_time_ns, message)`` in log-time order, the
    messages deserialised by rosbags (``.data`` of images is a numpy array;
    :mod:`semnerf_ros.bridge.convert` reads them)."""
    ts = typestore()
    with Reader(bag_path) as reader:
        conns = [c for c in reader.connections if topics is None or c.topic in topics]
        for conn, t, raw in reader.messages(connections=conns):
            yield conn.topic, conn.msgtype, t, ts.deserialize_cdr(raw, conn.msgtype)


def bag_custom_data(bag_path) -> dict:
    """The bag's ``custom_data`` (``semnerf.*`` keys written by :func:`write_scene_bag`)."""
    meta = Path(bag_path) / "metadata.yaml"
    if not meta.is_file():
        raise PlayerError(f"not a rosbag2 folder (no metadata.yaml): {bag_path}")
    info = (yaml.safe_load(meta.read_text()) or {}).get("rosbag2_bagfile_information", {})
    return dict(info.get("custom_data") or {})
