"""What the node says when inputs do not become frames: why a message was dropped by the
synchronizer, and -- when no set synchronized for ``input_timeout`` s -- which inputs have no
publisher, which send nothing, and the stamp skew of inputs that never pair.  Text only,
from counts and stamps the node passes in; no ROS imports."""
from __future__ import annotations

import time
from typing import Callable, Optional

from .ledger import InputLedger


def input_hint(topic: str) -> str:
    """What to do about an input without a publisher."""
    if topic == "depth":
        return "remap depth:=<your depth topic> or set use_depth:=false"
    if topic == "camera_info":
        return ("remap camera_info:=<your camera_info topic> or set use_camera_info:=false with fx, fy, "
                "cx, cy, width, height")
    return f"remap {topic}:=<your topic>"


def sync_drop_reason(topic: str, reason: str, synced: list, names: dict, slop: float,
                     waiting: list, publishers: Callable[[str], int]) -> str:
    """Why the synchronizer dropped a message of ``topic`` (``reason`` as it reports it).

    ``synced``: the synchronized inputs in order; ``names``: input -> resolved topic name;
    ``waiting``: messages queued per synchronized input; ``publishers(input)``: its publisher
    count (-1 unknown)."""
    name = names[topic]
    if reason == "duplicate_stamp":
        return f"another {name} message with the same stamp replaced it"
    if reason == "pruned_older":
        return f"it is older than the set just synchronized (no partner came within slop={slop} s)"
    if reason == "headerless":
        return "it has no header stamp"
    index = synced.index(topic)
    silent = [t for i, t in enumerate(synced) if i != index and waiting[i] == 0]
    if silent:
        why = f"nothing is waiting on {', '.join(names[t] for t in silent)} (has it stopped?)"
        no_pub = [t for t in silent if publishers(t) == 0]
        if no_pub:
            why += "; " + "; ".join(f"no publisher on {names[t]} ({input_hint(t)})" for t in no_pub)
        return why
    return (f"no partner within slop={slop} s on the other inputs ("
            + ", ".join(names[t] for t in synced if t != topic) + ")")


def input_problems(topics: list, synced: list, names: dict, ledger: InputLedger, timeout: float, slop: float,
                   qos: str, publishers: Callable[[str], int]) -> tuple:
    """(seconds since the last synchronized set, sentences naming why nothing synchronized
    -- empty when there is nothing to say).  ``topics``: the inputs to check (camera_info
    included when used); ``ledger``: what arrived when."""
    now = time.monotonic()
    with ledger.lock:
        quiet_s, received = now - ledger.last_sync_time, dict(ledger.received)
        last_received, latest_stamps = dict(ledger.last_received_time), dict(ledger.latest_stamp)
    if quiet_s < timeout:
        return quiet_s, []
    problems, stopped = [], []
    for t in topics:
        n_pub = publishers(t)
        if n_pub == 0:
            problems.append(f"no publisher on {names[t]} ({input_hint(t)})")
        elif received[t] == 0:
            problems.append(f"{names[t]} has {n_pub} publisher(s) but nothing arrived (not publishing yet, "
                            f"or a QoS that does not match: this node subscribes with qos '{qos}')")
        elif now - last_received.get(t, now) >= timeout:
            stopped.append(t)
    if not problems and all(t in latest_stamps for t in synced):
        ref = latest_stamps["rgb"]
        values = [latest_stamps[t] for t in synced]
        spread = max(values) - min(values)
        if spread > slop:
            offsets = ", ".join(f"{names[t]} {latest_stamps[t] - ref:+.3f} s" for t in synced if t != "rgb")
            problems.append(f"the inputs publish but never synchronize: their latest stamps differ by "
                            f"{spread:.3f} s ({offsets} relative to {names['rgb']}) and slop is {slop} s; "
                            f"stamp them from one clock or raise slop")
    if not problems and stopped and len(stopped) < len(topics):
        # some inputs stopped while others go on (all stopped: the source ended; quiet)
        problems.append(", ".join(names[t] for t in stopped) + f" sent nothing for {timeout:g} s or more (stopped?)")
    return quiet_s, problems


def no_sync_summary(problems: list, quiet_s: float, ever_synced: bool) -> Optional[str]:
    if not problems:
        return None
    what = (f"no frame synchronized in the last {quiet_s:.0f} s" if ever_synced
            else f"no frame synchronized {quiet_s:.0f} s after start")
    return f"{what}: " + "; ".join(problems)
