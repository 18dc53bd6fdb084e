"""The node's executor (ros/executor.py): with every worker busy, a task waiting in the pool is
submitted once, not again on every turn of the loop (rclpy issue 1452), and every callback still
runs."""
import threading
import time

import rclpy
from dds_rig import next_domain
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup

from semnerf_ros.ros.executor import NodeExecutor


def test_a_queued_task_is_submitted_once_and_every_callback_still_runs():
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=next_domain())
    node = rclpy.create_node("executor_probe", context=ctx)
    ran = [0] * 8
    lock = threading.Lock()

    def busy(i):
        def cb():
            with lock:
                ran[i] += 1
            time.sleep(0.02)   # a callback waiting on a lock or another process
        return cb

    for i in range(8):   # 8 timers at 200 Hz, each in its own group, on 2 workers: the pool stays full
        node.create_timer(0.005, busy(i), callback_group=MutuallyExclusiveCallbackGroup())
    executor = NodeExecutor(num_threads=2, context=ctx)
    executor.add_node(node)
    turns, most_pending, stop = [0], [0], threading.Event()

    def spin():
        while not stop.is_set():
            executor.spin_once(timeout_sec=0.05)
            turns[0] += 1
            most_pending[0] = max(most_pending[0], len(executor._futures))

    t = threading.Thread(target=spin)
    t.start()
    time.sleep(1.0)
    stop.set()
    t.join(5.0)
    executor.shutdown(timeout_sec=2.0)
    node.destroy_node()
    rclpy.shutdown(context=ctx)
    # measured: rclpy's MultiThreadedExecutor 99 callbacks, 693 turns, 51 tasks pending at most;
    # NodeExecutor 98 callbacks, 336 turns, 8 pending
    assert all(n > 0 for n in ran), ran                      # no timer starved
    assert most_pending[0] <= 8 + 2                          # one task per timer at most, not thousands
    assert executor.resubmits_avoided > 0                    # the pool was full: queued tasks were yielded again
    # a turn is a wait (for DDS or for a worker), not a spin: ~100 callbacks in 1 s of 2 workers
    assert turns[0] < 20 * sum(ran), (turns[0], sum(ran))
