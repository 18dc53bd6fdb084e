"""The RViz config under a namespace: config/semnerf.rviz names the node's outputs by their full
names without a namespace (``/semnerf_node/semantic_color``, ``/semnerf_node/mesh``, ...); a node
launched with ``namespace:=robot1`` publishes ``/robot1/semnerf_node/...``, so the launch file
rewrites those names (:func:`namespaced_rviz_config`) into a temporary copy that RViz loads.
Topics outside the node (the camera's inputs, absolute remaps) are left as they are.  No ROS
imports (the launch file and the tests use it)."""
from __future__ import annotations

import re


def namespaced_rviz_config(text: str, namespace: str, node_name: str = "semnerf_node") -> str:
    """``text`` (an .rviz YAML) with every ``/<node_name>/...`` topic moved under ``namespace``."""
    ns = "/".join(p for p in namespace.strip().split("/") if p)
    if not ns:
        return text
    return re.sub(rf"(Value:\s*)/{re.escape(node_name)}/", rf"\g<1>/{ns}/{node_name}/", text)
