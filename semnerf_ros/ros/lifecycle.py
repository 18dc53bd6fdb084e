"""``semnerf_lifecycle_node``: the managed (lifecycle) variant of the mapping node, for systems that
bring heavy nodes up and down through lifecycle transitions (nav2's lifecycle manager,
``ros2 lifecycle set /semnerf_node configure``).  The plain :class:`~.node.SemNerfNode` stays the
default executable; this one shares all of its parts (the same class, with the phases run as
transitions, as rclpy's own ``LifecycleNode`` = ``LifecycleNodeMixin`` + ``Node``):

* *configure*: reads the parameters, builds the engine and does the GPU warm-up, creates the
  publishers, services and actions (``~/get_status`` answers from here on; /diagnostics and
  ``~/status`` report "inactive");
* *activate*: subscribes to the inputs (and TF), starts the outputs and training;
* *deactivate*: unsubscribes, pauses training and the outputs (the map is kept);
* *cleanup*: stops the engine and frees its memory, the GPU's included (back to unconfigured);
* *shutdown*: as SIGINT on the plain node (cancel long work, stop, ``save_on_shutdown``).

A failed *configure* (a parameter value that cannot be used) logs the reason and leaves the
node unconfigured."""
from __future__ import annotations

from rclpy.lifecycle import LifecycleNodeMixin, LifecycleState, TransitionCallbackReturn

from ..bridge.params import ParameterValueError
from .node import NODE_NAME, SemNerfNode


class SemNerfLifecycleNode(LifecycleNodeMixin, SemNerfNode):
    """The mapping node, managed.  ``mapper``: the engine to use (built from the parameters at
    each *configure* when None)."""

    MANAGED = True

    def __init__(self, mapper=None, node_name: str = NODE_NAME, on_ready=None, **node_kwargs):
        SemNerfNode.__init__(self, mapper, node_name, **node_kwargs)
        LifecycleNodeMixin.__init__(self)
        if on_ready is not None:
            on_ready()
        self.get_logger().info(f"{node_name} (lifecycle) unconfigured: waiting for the configure transition")

    def _transition(self, name: str, step, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            step()
        except ParameterValueError as exc:
            self.get_logger().error(f"{name} failed: invalid parameters: {exc}")
            return TransitionCallbackReturn.FAILURE
        except Exception as exc:  # noqa: BLE001 - a failed transition must not kill the node
            self.get_logger().error(f"{name} failed: {type(exc).__name__}: {exc}")
            return TransitionCallbackReturn.ERROR
        self.get_logger().info(f"{name}: now {self.state}")
        return getattr(LifecycleNodeMixin, f"on_{name}")(self, state)

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        return self._transition("configure", self.configure, state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        return self._transition("activate", self.activate, state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        return self._transition("deactivate", self.deactivate, state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        return self._transition("cleanup", self.cleanup, state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        def shutdown():
            if self.state == "active":
                self.deactivate()
            self.begin_shutdown("shutdown transition")
            self.close()
        return self._transition("shutdown", shutdown, state)
