"""``semnerf_node``: the ROS 2 mapping node (:class:`semnerf_ros.ros.node.SemNerfNode`) as a process."""
from __future__ import annotations

import sys
from typing import Optional

from ..ros.process import run


def main(argv: Optional[list] = None, fast_exit: bool = True) -> int:
    """Run the node until SIGINT / SIGTERM (exit codes: :func:`semnerf_ros.ros.process.run`)."""
    return run(argv, fast_exit=fast_exit)


if __name__ == "__main__":
    sys.exit(main())
