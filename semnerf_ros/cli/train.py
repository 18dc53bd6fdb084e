"""``semnerf-train``: the offline trainer (:mod:`semnerf_ros.train`) with the seed's flags."""
from __future__ import annotations

import logging
import sys
from typing import Optional, Sequence

from .. import tasks
from ..datasets import DatasetError
from ..engine.config import ConfigError
from ..engine.mapper import MapFileError
from ..train import TrainError, parse_args, select_gpus, train


def main(argv: Optional[Sequence[str]] = None) -> int:
    """CLI entry point (``semnerf-train``); returns the exit status."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING if not args.quiet else logging.ERROR,
                        format="%(levelname)s %(name)s: %(message)s")
    select_gpus(args.gpu)
    try:
        train(None, args)
    except (ConfigError, DatasetError, tasks.TaskError, MapFileError, TrainError, FileNotFoundError) as exc:
        print(f"semnerf-train: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("semnerf-train: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
