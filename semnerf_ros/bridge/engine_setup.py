"""The engine the node runs: which engine settings (the ``engine_config`` file, the CPU
profile, or the defaults for the device) and the :class:`~semnerf_ros.engine.mapper.Mapper`
built from them, with its GPU kernels compiled before any frame arrives -- in the node's process
or in one of its own (:func:`make_engine`, parameter ``engine_location``).  No ROS imports."""
from __future__ import annotations

import gc
import os
from typing import Callable, Optional

import torch

from ..engine.config import ConfigError, load_config
from ..engine.mapper import Mapper, resolve_device
from .engine_process import EngineProcess, EngineProcessError
from .params import ParameterValueError, engine_overrides, find_config_file

#: engine file the node takes on a CPU when ``engine_config`` is empty (config/, next to
#: semnerf_cpu.yaml; see docs/node.md "CPU profile")
CPU_ENGINE_FILE = "engine_cpu.yaml"


def _device_param(values: dict) -> Optional[str]:
    return None if values["device"] in ("", "auto") else values["device"]


def _node_device(values: dict) -> torch.device:
    """The device parameter ``device`` resolves to (auto: CUDA when there is one), or
    :class:`ParameterValueError` naming it."""
    try:
        return resolve_device(_device_param(values))
    except (RuntimeError, ValueError) as exc:
        raise ParameterValueError(f"parameter 'device': {exc}") from exc


def engine_profile(values: dict) -> tuple:
    """(engine YAML path or None, a sentence saying which engine settings the node takes and
    why).  ``engine_config`` set: that file (a relative name that is not found from the
    working directory is looked up in the package's config/).  Empty: on a CPU the CPU
    profile :data:`CPU_ENGINE_FILE`, else the engine defaults for the device."""
    given = values["engine_config"]
    if given:
        path = find_config_file(given)
        if path is None:
            raise ParameterValueError(
                f"parameter 'engine_config': file {given!r} not found (relative names are looked up "
                f"in the working directory {os.getcwd()} and in the package's config/ folder)")
        return str(path), f"{path} (parameter engine_config)"
    device = _node_device(values)
    if device.type == "cpu" and values["model_type"] == "hash":
        path = find_config_file(CPU_ENGINE_FILE)
        if path is not None:
            return str(path), (f"CPU profile {path} (no engine_config given and the node runs on the CPU; "
                               f"set engine_config to choose another)")
        return None, (f"CPU defaults of semnerf_ros/engine/config.py (CPU_HASH_PRESET; {CPU_ENGINE_FILE} "
                      f"was not found in the package's config/)")
    return None, f"engine defaults for {device} (semnerf_ros/engine/config.py; no engine_config given)"


def make_mapper(values: dict, num_classes: int, class_names: Optional[list], info: Callable[[str], object]) -> Mapper:
    """The Mapper for the node's parameters ``values``; ``info`` logs the profile and the
    warm-up.  Raises :class:`ParameterValueError` naming the parameter at fault."""
    path, profile = engine_profile(values)
    try:
        cfg = load_config(path, engine_overrides(values))
    except ConfigError as exc:
        raise ParameterValueError(f"parameter 'engine_config' ({path or 'defaults'}): {exc}") from exc
    info(f"engine profile: {profile}")
    try:
        mapper = Mapper(cfg, num_classes, class_names=class_names, device=_device_param(values))
    except (ValueError, RuntimeError) as exc:
        raise ParameterValueError(f"cannot create the mapper (parameters 'engine_config', "
                                  f"'model_type', 'device'): {exc}") from exc
    # Compile the GPU kernels now, in the main thread, before any frame arrives:
    # otherwise the first training step compiles them (~10 s) while holding the map.
    seconds = mapper.warmup()
    if seconds:
        info(f"GPU kernels compiled and initialised in {seconds:.1f} s")
    return mapper


def _engine_location(values: dict) -> str:
    return str(values.get("engine_location", "auto"))


def wants_own_process(values: dict) -> bool:
    """Parameter ``engine_location``: ``process``, ``node``, or ``auto`` -- a process of its own when
    the engine trains on a GPU (where the training step is short enough for the ROS threads'
    share of the interpreter lock to slow it), in the node's process on a CPU.  (Words, not
    true / false: ``-p engine_location:=true`` would reach the node as a bool.)"""
    mode = _engine_location(values)
    if mode in ("process", "node"):
        return mode == "process"
    return _node_device(values).type == "cuda"


def make_engine(values: dict, num_classes: int, class_names: Optional[list], info: Callable[[str], object],
                warn: Optional[Callable[[str], object]] = None):
    """The node's engine: :func:`make_mapper`'s Mapper, in a child process
    (:class:`~semnerf_ros.bridge.engine_process.EngineProcess`) when :func:`wants_own_process`.
    With ``engine_location: auto`` a child that cannot be started or dies while starting
    (:class:`EngineProcessError`, ``OSError``) is reported through ``warn`` (default ``info``) and
    the engine is built in the node's process instead; with ``process`` that error is raised.
    Errors of the engine's own (bad settings, GPU out of memory) are raised either way."""
    if not wants_own_process(values):
        return make_mapper(values, num_classes, class_names, info)
    try:
        engine = EngineProcess(make_mapper, values, num_classes, class_names, info)
    except (EngineProcessError, OSError) as exc:
        if _engine_location(values) == "process":
            raise
        (warn or info)(f"the engine's own process could not start ({exc}); running the engine in the node's "
                       f"process instead (parameter engine_location: auto; set 'node' to skip the attempt)")
        return make_mapper(values, num_classes, class_names, info)
    info(f"engine running in process {engine.pid} (parameter engine_location: {values.get('engine_location')})")
    return engine


def release_engine_memory() -> None:
    """Let a dropped engine's memory go (the lifecycle node's *cleanup*, after it stopped the
    Mapper and dropped every reference to it): the garbage is collected and PyTorch's cached
    GPU blocks are returned to the driver, so another process can use the GPU."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
