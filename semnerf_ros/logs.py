"""Rate-limited log lines, shared by the engine (``Mapper``: out-of-memory steps, failed
steps) and the node (rejected inputs, input diagnostics): a fault that repeats every frame
or every step must not flood the log, and the next line that gets through says how many
were held back; and the stack dump a stuck process gives on SIGUSR1.  No dependencies beyond the
standard library."""
from __future__ import annotations

import faulthandler
import re
import signal
import threading
import time
from typing import Callable, Optional, Union

__all__ = ["ThrottledLog", "warning_kind"]

_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def warning_kind(text: str) -> str:
    """The text of a warning with its numbers blanked: throttled per kind, 'norm 2.0000'
    and 'NaN' (two problems of one reason) are both logged, while the same problem with
    other numbers is throttled together."""
    return _NUMBER.sub("#", text)


class ThrottledLog:
    """At most one line per ``period`` seconds per key; the next line of that key ends with
    ``[N more like this in the last T s]``.

    ``period``: seconds, or a callable returning them (a run-time parameter).  Keys not
    seen for a period are forgotten once more than ``max_keys`` are held.  Thread-safe.
    """

    def __init__(self, period: Union[float, Callable[[], float]] = 5.0, max_keys: int = 4096,
                 clock: Callable[[], float] = time.monotonic):
        self.period = period
        self.max_keys = int(max_keys)
        self._clock = clock
        self._times: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._lock = threading.Lock()

    def _period(self) -> float:
        return float(self.period() if callable(self.period) else self.period)

    def __call__(self, key: str, text: str, emit: Callable[[str], object], period: Optional[float] = None) -> bool:
        """``emit(text)`` (with the suppressed count appended) unless a line of ``key`` went
        out less than ``period`` (default: this log's) seconds ago.  True when emitted."""
        now = self._clock()
        p = self._period() if period is None else float(period)
        with self._lock:
            last = self._times.get(key)
            if last is not None and now - last < p:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return False
            if len(self._times) > self.max_keys:
                for k in [k for k, t in self._times.items() if now - t >= p]:
                    self._times.pop(k)
            self._times[key] = now
            suppressed = self._suppressed.pop(key, 0)
        if suppressed:
            text += f" [{suppressed} more like this in the last {now - last:.1f} s]"
        emit(text)
        return True


def dump_stacks_on_sigusr1() -> None:
    """``kill -USR1 <pid>`` prints every thread's Python stack to stderr and the process runs on
    (the node's process and its engine process; a no-op where there is no SIGUSR1)."""
    if hasattr(signal, "SIGUSR1"):
        faulthandler.register(signal.SIGUSR1, all_threads=True)
