"""What the in-process DDS tests share: a fresh context on a domain of its own, the node under
test and a probe node spun by one executor, service calls, waiting on a condition, and an
orderly close.  Each test module's rig subclasses :class:`DdsRig` and adds its own publishers
and checks; its fixture yields :func:`closing_factory` of it."""
from __future__ import annotations

import itertools
import os
import threading
import time

import rclpy
from rclpy.executors import MultiThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy

_domains = itertools.count()


def next_domain() -> int:
    """A ROS_DOMAIN_ID unlikely to be shared with a concurrent run (20..199), a new one per rig."""
    return 20 + (os.getpid() * 7 + next(_domains)) % 180


def reliable(depth: int = 20) -> QoSProfile:
    return QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE)


def wait(cond, timeout: float = 5.0, period: float = 0.01) -> bool:
    """Poll ``cond()`` until it holds or ``timeout`` s pass; its last value."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(period)
    return cond()


class DdsRig:
    """Context, executor and clean-up for a node under test (``self.node``, with a ``close()``)
    and a probe node (``self.io``).  Subclasses call :meth:`open_context` first and
    :meth:`spin` once both nodes exist."""

    call_timeout = 10.0      # seconds for a service answer
    service_timeout = 5.0    # seconds for the service to appear

    wait = staticmethod(wait)

    def open_context(self) -> None:
        self.ctx = rclpy.Context()
        rclpy.init(context=self.ctx, domain_id=next_domain())

    def spin(self, threads: int = 4) -> None:
        self.ex = MultiThreadedExecutor(num_threads=threads, context=self.ctx)
        self.ex.add_node(self.node)
        self.ex.add_node(self.io)
        self.thread = threading.Thread(target=self.ex.spin, daemon=True)
        self.thread.start()

    def call(self, srv_type, name, request, timeout=None):
        cli = self.io.create_client(srv_type, name)
        assert cli.wait_for_service(timeout_sec=self.service_timeout), name
        fut = cli.call_async(request)
        assert wait(fut.done, self.call_timeout if timeout is None else timeout), f"{name} did not answer"
        return fut.result()

    def close(self) -> None:
        self.node.close()
        self.ex.shutdown(timeout_sec=2.0)
        self.node.destroy_node()
        self.io.destroy_node()
        rclpy.shutdown(context=self.ctx)
        self.thread.join(2.0)


def closing_factory(build):
    """For a fixture: ``yield from closing_factory(Rig)`` yields a function that builds rigs
    (``build(*args, **params)``) and closes every one after the test."""
    made = []

    def make(*args, **params):
        rig = build(*args, **params)
        made.append(rig)
        return rig

    yield make
    for rig in made:
        rig.close()
