"""The node's process: start-up, spinning, and the orderly shutdown on SIGINT / SIGTERM.

Exit codes and the shutdown sequence: :func:`run`; signal handling: :class:`ShutdownSignals`
(docs/node.md "Stopping the node")."""
from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from typing import Optional

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.signals import SignalHandlerOptions

from ..bridge.params import ParameterValueError
from ..logs import dump_stacks_on_sigusr1
from .executor import NodeExecutor
from .node import NODE_NAME, SemNerfNode

#: seconds the shutdown waits for running services / mesh extraction (which are
#: cancelled first and normally end within a second) before leaving them behind
SHUTDOWN_WAIT_S = 4.0


class ShutdownSignals:
    """SIGINT / SIGTERM of the node process (rclpy's own handlers are not installed, so
    the context stays valid and every shutdown line still reaches /rosout):

    * while the node is starting, the first signal raises ``KeyboardInterrupt``
      (start-up abandoned, exit code 0);
    * once it runs, the first signal sets :attr:`requested`: the spin loop ends and the
      orderly shutdown begins (running mesh extractions are cancelled within about a
      second, training stops, ``save_on_shutdown`` saves);
    * a second signal is never ignored: it is logged and the shutdown skips what is
      left (no waiting, no save; inside a write it raises ``KeyboardInterrupt``, and the
      atomic writer removes its temporary file), exit code 130.  ``ros2 launch`` sends
      SIGINT, then SIGTERM 5 s later and SIGKILL 5 s after that.
    """

    def __init__(self):
        self.requested = threading.Event()
        self.first = ""
        self.count = 0
        self.running = False        # the node is up (first signal: orderly shutdown)
        self.shutting_down = False  # the shutdown sequence runs (another signal: interrupt it)
        self.forced = False
        self._previous: dict = {}

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self.handle)

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def handle(self, signum, _frame=None) -> None:
        name = signal.Signals(signum).name
        self.count += 1
        if self.count == 1:
            self.first = name
            self.requested.set()
            if not self.running:
                raise KeyboardInterrupt
            return
        self.forced = True
        rclpy.logging.get_logger(f"{NODE_NAME}.shutdown").warning(
            f"{name} again (signal {self.count}): stopping now, without waiting for running work or "
            f"saving the map")
        if self.shutting_down or not self.running:
            raise KeyboardInterrupt


def run(argv: Optional[list] = None, fast_exit: bool = True, node_class: type = SemNerfNode) -> int:
    """The node's process (``semnerf_node``, ``ros2 run semnerf_ros semnerf_node``,
    ``python -m semnerf_ros.ros.node``; :func:`semnerf_ros.cli.node.main`).

    Exit code: 0 after a clean shutdown, 2 when a parameter value or the parameter
    file is rejected at start-up, 130 when a second signal cut the shutdown short.
    Shutdown (SIGINT / SIGTERM, see :class:`ShutdownSignals` and docs/node.md): a
    running mesh export or marker extraction is cancelled at its next chunk (about a
    second; the response says nothing was written, and the atomic writer leaves no
    partial file), ``save_map`` / ``load_map`` in progress get up to
    :data:`SHUTDOWN_WAIT_S` s, training stops (3 s at most), ``save_on_shutdown``
    saves; everything is logged through the live node (no rosout errors).  With
    ``fast_exit`` (default) the process then ends with ``os._exit`` once everything is
    stopped, saved and flushed, skipping the interpreter's teardown of torch (1-2 s on
    a busy CPU); ``fast_exit=False`` returns the code instead.  ``node_class``: the node to run
    (:class:`~.lifecycle.SemNerfLifecycleNode` for ``semnerf_lifecycle_node``).
    """
    args = sys.argv if argv is None else [sys.argv[0]] + list(argv)
    quiet_log = rclpy.logging.get_logger(f"{NODE_NAME}.shutdown")
    try:
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    except Exception as exc:  # noqa: BLE001 - rcl's RCLError: unreadable --params-file, bad --ros-args
        rclpy.logging.get_logger(NODE_NAME).error(
            f"invalid arguments or parameter file: {exc} (check the YAML syntax of --params-file "
            f"and the --ros-args)")
        return _finish(2, fast_exit)
    signals = ShutdownSignals()
    signals.install()
    dump_stacks_on_sigusr1()   # a stuck node tells where it waits
    try:
        node = node_class(on_ready=lambda: setattr(signals, "running", True))
    except ParameterValueError as exc:
        rclpy.logging.get_logger(NODE_NAME).error(f"invalid parameters: {exc}")
        rclpy.try_shutdown()
        return _finish(2, fast_exit)
    except (ExternalShutdownException, KeyboardInterrupt):
        quiet_log.info(f"stopped while starting ({signals.first or 'interrupted'})")
        rclpy.try_shutdown()
        return _finish(0, fast_exit)
    executor = NodeExecutor(num_threads=6)
    executor.add_node(node)
    code = 0
    try:
        # spin in short slices so that the Python signal handler runs promptly
        while not signals.requested.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        if rclpy.ok():
            raise
    t0 = time.monotonic()
    signals.shutting_down = True
    log = node.get_logger() if rclpy.ok() else quiet_log
    try:
        node.begin_shutdown(signals.first or "shutdown")
        if not signals.forced:
            for name, detail, took in node.wait_for_work(SHUTDOWN_WAIT_S):
                log.warning(f"leaving {name} {detail} behind: still running {took:.1f} s after the signal")
        if signals.forced and node.values.get("save_on_shutdown"):
            node.values["save_on_shutdown"] = False
            log.warning("save_on_shutdown skipped: a second signal asked to stop now")
        node.close(log=log)
        executor.shutdown(timeout_sec=1.0)
        node.destroy_node()
    except KeyboardInterrupt:
        code = 130
        work = node.ops.running_work() if node.ops is not None else []
        left = ", ".join(f"{n} {d}".strip() for n, d, _ in work) or "nothing"
        quiet_log.warning(f"shutdown cut short by a second signal; left running: {left} (an atomic write "
                          f"in progress leaves no partial file)")
    finally:
        signals.restore()
        rclpy.try_shutdown()
        quiet_log.info(f"stopped in {time.monotonic() - t0:.2f} s")
    return _finish(code, fast_exit)


def _finish(code: int, fast_exit: bool) -> int:
    if not fast_exit:
        return code
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
