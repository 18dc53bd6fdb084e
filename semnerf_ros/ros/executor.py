"""The node's executor: rclpy's ``MultiThreadedExecutor`` without its re-submission spin.

rclpy's ``_wait_for_ready_callbacks`` yields every task that is "not executing and not done" as
ready work.  In a ``MultiThreadedExecutor`` a task handed to the thread pool stays in that state
until a worker picks it up.  So when every worker is busy -- the node's callbacks wait on the
synchronizer's lock, on the map, or on the engine's process -- the spinning thread gets the same
queued task back at once, submits it again, and loops without waiting. Measured on the CPU (30 Hz
input, the engine in its own process): 2 600 turns a second for 110 callbacks, up to 2 400 copies
of tasks in the pool, and that thread holding the interpreter lock 95 % of the time the node's
process held it.  The lock is what the subscriptions and, in-process, the training thread need.

This is rclpy issue 1452, fixed upstream by rclpy pull request 1547 (late 2025), which the Kilted
wheels predate.  :class:`NodeExecutor` is the smallest equivalent at the level of
``_spin_once_impl``: a task already waiting in the pool is not submitted again, and the spinning
thread waits (at most :data:`QUEUED_WAIT_S`) for a worker to pick up a task instead of looping.
With an rclpy that has the fix, the task is never yielded twice and the class behaves as its base.
"""
from __future__ import annotations

import threading
from typing import Any, Callable, Optional

from rclpy.executors import (
    ConditionReachedException,
    ExternalShutdownException,
    MultiThreadedExecutor,
    ShutdownException,
    TimeoutException,
)

#: seconds the spinning thread waits for a worker when the only ready work is already queued
QUEUED_WAIT_S = 0.005


class NodeExecutor(MultiThreadedExecutor):
    """``MultiThreadedExecutor`` that submits each task once (see the module docstring)."""

    def __init__(self, num_threads: Optional[int] = None, **kwargs: Any):
        super().__init__(num_threads=num_threads, **kwargs)
        self._queued: set = set()                 # tasks handed to the pool, not yet picked up
        self._picked = threading.Condition()      # notified when a worker picks a task up
        self._picks = 0
        self.resubmits_avoided = 0                # tasks yielded again while queued (diagnostics)

    def _run_task(self, task: Callable[[], Any]) -> None:
        with self._picked:
            self._queued.discard(task)
            self._picks += 1
            self._picked.notify_all()
        task()

    def _spin_once_impl(self, timeout_sec=None, wait_condition: Callable[[], bool] = lambda: False) -> None:
        try:
            task, _, _ = self.wait_for_ready_callbacks(timeout_sec, None, wait_condition)
        except (ExternalShutdownException, ShutdownException, TimeoutException, ConditionReachedException):
            return
        with self._picked:
            if task in self._queued:
                # still waiting for a worker: wait for one to free up rather than spin
                self.resubmits_avoided += 1
                picks = self._picks
                self._picked.wait_for(lambda: self._picks != picks, QUEUED_WAIT_S)
                return
            self._queued.add(task)
        self._executor.submit(self._run_task, task)
        self._futures.append(task)
        for future in self._futures[:]:
            if future.done():
                self._futures.remove(future)
                future.result()   # raise any exception of the callback, as the base class does
