"""``semnerf_lifecycle_node``: the managed variant of the mapping node
(:class:`semnerf_ros.ros.lifecycle.SemNerfLifecycleNode`) as a process."""
from __future__ import annotations

import sys
from typing import Optional

from ..ros.lifecycle import SemNerfLifecycleNode
from ..ros.process import run


def main(argv: Optional[list] = None, fast_exit: bool = True) -> int:
    """Run the lifecycle node until SIGINT / SIGTERM (exit codes: :func:`semnerf_ros.ros.process.run`)."""
    return run(argv, fast_exit=fast_exit, node_class=SemNerfLifecycleNode)


if __name__ == "__main__":
    sys.exit(main())
