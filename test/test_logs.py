"""semnerf_ros.logs.ThrottledLog: the rate limit the Mapper and the node share."""
from __future__ import annotations

from semnerf_ros.logs import ThrottledLog, warning_kind


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_one_line_per_period_then_the_count_of_held_back_lines():
    clock, out = Clock(), []
    log = ThrottledLog(5.0, clock=clock)
    assert log("oom", "out of memory", out.append)
    for _ in range(3):
        clock.t += 1.0
        assert not log("oom", "out of memory", out.append)
    assert log("other", "step failed", out.append)          # keys are independent
    clock.t += 2.5                                           # 5.5 s after the first line
    assert log("oom", "out of memory", out.append)
    assert out == ["out of memory", "step failed", "out of memory [3 more like this in the last 5.5 s]"]


def test_period_may_be_a_run_time_value_or_given_per_call():
    clock, out, period = Clock(), [], [10.0]
    log = ThrottledLog(lambda: period[0], clock=clock)
    log("k", "a", out.append)
    clock.t += 1.0
    assert not log("k", "a", out.append)
    period[0] = 0.5                                          # `ros2 param set ... warn_period 0.5`
    assert log("k", "a", out.append)
    clock.t += 1.0
    assert not log("k", "a", out.append, period=60.0)
    assert out == ["a", "a [1 more like this in the last 1.0 s]"]


def test_old_keys_are_forgotten_beyond_the_bound():
    clock = Clock()
    log = ThrottledLog(1.0, max_keys=10, clock=clock)
    for i in range(50):
        log(f"k{i}", "x", lambda _t: None)
        clock.t += 2.0
    assert len(log._times) <= 12


def test_warning_kind_blanks_numbers_only():
    assert warning_kind("norm 2.0000 at t=1e-3") == warning_kind("norm 7 at t=-5.5E+2")
    assert warning_kind("quaternion norm 2.0") != warning_kind("pose has NaN")
