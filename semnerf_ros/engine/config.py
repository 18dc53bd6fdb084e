"""Configuration: the seed's YAML keys and defaults plus this package's extensions.

A config is a nested ``dict`` with the sections of the seed's
``SSR_room0_config.yaml`` (``experiment``, ``model``, ``render``, ``train``,
``logging``) and two of ours (``mapper`` for online keyframing and the fast
field's ``hash`` options live under ``model``/``render``/``mapper``).
:func:`load_config` merges a user file onto :data:`DEFAULTS`, accepts the
seed's spellings (``5e-4``, ``1024*128``, ``250e3`` as strings), rejects
unknown keys and wrong types with a message that names the key, and returns a
fully populated dict.  The defaults are written once, as typed dataclasses (one
per section: :class:`ExperimentConfig`, :class:`ModelConfig` with
:class:`HashConfig`, :class:`RenderConfig`, :class:`TrainConfig`,
:class:`LoggingConfig`, :class:`MapperConfig`, together :class:`EngineConfig`);
:data:`DEFAULTS` is their dict form, and ``EngineConfig.from_dict(cfg)`` gives
typed sections of any loaded config.

Layers, lowest first: :data:`DEFAULTS`; the fast field's presets (:data:`HASH_PRESET`,
:data:`CPU_HASH_PRESET`); a protocol's preset (``presets=``, e.g. :data:`SEED_PROTOCOL_PRESET`
for ``semnerf-train --protocol seed``); the user's file; the overrides.  Every key of the seed's
config files is honoured or rejected with a message (:mod:`.seed_keys`).
"""
from __future__ import annotations

import copy
import difflib
import logging
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import yaml

from .seed_keys import run_record_keys, unsupported_values

log = logging.getLogger("semnerf_ros.config")


class ConfigError(ValueError):
    """A configuration value or file that cannot be used."""


@dataclass
class HashConfig:
    """The fast field's grid and heads (``model.hash``; used when ``model.type`` is ``hash``)."""

    n_levels: int = 16
    n_features_per_level: int = 2
    log2_hashmap_size: int = 19
    base_resolution: int = 16
    finest_resolution: int = 1024  # cells along the largest scene-box side
    hidden_dim: int = 64
    geo_feat_dim: int = 15
    hidden_dim_color: int = 64
    hidden_dim_semantic: int = 64
    semantic_max_resolution: int = 64  # finest grid level the semantic head reads (0 = all; branch shared)
    # grid: a coarse semantic grid of its own | shared: a head on the density grid's coarse levels
    # (which learns per-pixel label noise in time)
    semantic_branch: str = "grid"
    semantic_grid_levels: int = 4  # semantic grid (branch grid): levels ...
    semantic_grid_base: int = 16  # ... from this many cells along the scene cube's side ...
    semantic_grid_cell: float = 0.08  # ... to cells of this size (m) at the finest level
    semantic_grid_features: int = 4  # features per level
    semantic_grid_log2_hashmap_size: int = 21  # levels with more vertices than this table are hashed
    backend: str = "auto"  # auto | torch | triton


@dataclass
class ExperimentConfig:
    """Data, output, device and seed (the seed's ``experiment`` section)."""

    scene_file: str = ""  # seed: Replica habitat folder; its info_semantic.json names the classes
    save_dir: str = "runs/semnerf"  # where metrics, renders, checkpoints go
    dataset_dir: str = ""  # Replica- or ScanNet-layout folder
    dataset_type: str = "auto"  # auto | replica | replica_nyu_cnn | scannet
    convention: str = "opencv"  # camera axes of the dataset's poses: opencv | opengl (x right, y up, z back)
    width: int = 320  # training / rendering resolution (px)
    height: int = 240
    gpu: Union[str, int, None] = ""  # CUDA_VISIBLE_DEVICES before CUDA starts ("" = leave it; --gpu wins)
    enable_semantic: bool = True  # false: a plain NeRF (no labels, no semantic loss or scores)
    enable_depth: bool = True  # load depth (supervised if train.wgt_depth > 0; bounds of the hash field)
    endpoint_feat: bool = False  # seed key; only false is supported
    train_step: int = 5  # every train_step-th frame trains (seed: 5) ...
    test_offset: int = 2  # ... and the frame test_offset after it tests (seed: step // 2)
    total_num: int = 0  # frames of the sequence to use; 0 = all (--protocol seed, Replica: 900)
    sample_step: int = 0  # seed's ScanNet split: train_step = sample_step, test_offset = sample_step // 2
    nyu_mode: str = "auto"  # label set: ScanNet nyu40 | nyu13; replica_nyu_cnn nyu13 | nyu34 | gt_nyu13
    load_softmax: bool = False  # seed key (replica_nyu_cnn); only false is supported
    seed: int = 0  # RNG seed for corruptions, sampling, init
    device: str = "auto"  # auto | cuda | cuda:N | cpu


@dataclass
class ModelConfig:
    """The field (the seed's ``model`` section; ``hash`` holds the fast field's options)."""

    type: str = "nerf"  # nerf (the paper's MLPs) | hash (fast field)
    netdepth: int = 8
    netwidth: int = 256
    netdepth_fine: int = 8
    netwidth_fine: int = 256
    chunk: int = 1024 * 128  # rays per forward pass when rendering images
    netchunk: int = 1024 * 128  # points per forward pass
    hash: HashConfig = field(default_factory=HashConfig)


@dataclass
class RenderConfig:
    """Ray sampling and rendering (the seed's ``render`` section plus the fast field's marcher)."""

    N_rays: int = 32 * 32 * 1  # rays per training batch
    N_samples: int = 64  # coarse stratified samples per ray (nerf)
    N_importance: int = 128  # fine importance samples per ray (nerf)
    perturb: int = 1
    use_viewdirs: bool = True
    i_embed: int = 0
    multires: int = 10
    multires_views: int = 4
    raw_noise_std: float = 1.0
    test_viz_factor: int = 1
    # true: each step's rays from one training image (the seed's sampling, --protocol seed);
    # false: from all keyframes, a share (mapper.recent_fraction) from the newest (online default)
    no_batching: bool = False
    depth_range: list = field(default_factory=lambda: [0.1, 10.0])  # near, far along the camera z axis (m)
    white_bkgd: bool = False
    # fast field (model.type: hash)
    scene_bounds: Union[str, list, None] = "auto"  # [xmin, ymin, zmin, xmax, ymax, zmax] (m, world) or auto
    bounds_margin: float = 0.5  # metres added around auto bounds
    march_steps: int = 512  # samples per ray along [near, far] before skipping
    max_samples_per_ray: int = 48  # occupied samples kept per ray
    # how a GPU renders views without gradients: packed (densities front to back in blocks of slots
    # for the rays still open, early termination at transmittance 1e-4, heads only on samples of
    # weight > 1e-4; the CPU's renderer; a 320x240 view 9-12 ms against 13-15 ms on an H200, the
    # same mIoU, docs/benchmarks.md ninth session) or dense (every kept sample, CUDA-graph replay)
    view_path: str = "packed"
    view_max_samples: int = 0  # samples kept per ray in views (0: max_samples_per_ray, as training)
    # dense views (view_path dense): the colour and semantic heads run only on each ray's this many
    # samples of largest compositing weight, the rest given their weighted mean (0: on every sample, as
    # training); density and depth keep every sample.  16: a 320x240 view 14.1 ms against 19.4, mIoU and PSNR unchanged
    # (docs/benchmarks.md, sixth session)
    view_head_samples: int = 16
    # share of each ray's samples placed where the occupancy grid's densities put the first surface
    # (the rest spread evenly over the occupied steps, as at 0); training and views alike
    surface_sample_fraction: float = 0.0
    # the ray marcher: torch (whole-tensor passes over every step; the reference, and the path on a
    # CPU), triton (one kernel that walks the steps per ray, CUDA only; engine/march_triton.py) or
    # auto (the kernel for renders without gradients where CUDA and Triton are, torch elsewhere)
    march_backend: str = "auto"
    occupancy_resolution: int = 128
    occupancy_threshold: float = 0.01  # opacity of a cell below which it is skipped
    occupancy_update_every: int = 16
    occupancy_warmup_steps: int = 256


@dataclass
class TrainConfig:
    """Optimisation and losses (the seed's ``train`` section plus this package's label rules)."""

    lrate: float = 5e-4
    lrate_decay: float = 250e3  # steps for the learning rate to fall by 10x
    N_iters: int = 200000
    wgt_sem: float = 4e-2
    wgt_depth: float = 0.0  # depth loss weight (0 = off); used when depth is given
    semantic_loss: str = "ce"  # ce (the paper) | gce (generalized CE) | bootstrap (soft bootstrapping)
    semantic_loss_q: float = 0.7  # gce exponent q / bootstrap weight of the given label
    semantic_geometry_grad: bool = False  # false: the semantic loss trains the semantic branch only (hash field)
    # true: train on per-voxel label votes of all keyframes' depth pixels: a decided voxel's winner,
    # no label where it is ambiguous, else the pixel's label (engine/label_fusion.py; on for the
    # fast field through HASH_PRESET)
    label_fusion: bool = False
    label_fusion_cell: float = 0.04  # fusion voxel edge (m)
    label_fusion_min_count: int = 3  # votes a voxel needs before its winner replaces pixel labels ...
    label_fusion_margin: float = 2.0  # ... and how many times the runner-up's votes the winner needs
    label_fusion_stride: int = 1  # every stride-th pixel (each direction) of a keyframe votes
    # a pixel keeps its own label where its voxel gave that label >= this share of the winner's votes
    # (a second object meeting the first inside the voxel, not noise); 0 = every pixel takes the winner
    label_fusion_keep_share: float = 0.0
    # a class with >= 1000 votes that wins no voxel clearly (8 votes and the margin) is noise, not in
    # the scene: its labels train nothing, so the field cannot learn it where few views saw a surface
    label_fusion_noise_classes: bool = True
    # keyframes without depth (RGB-only input) vote too, through a depth rendered from the map:
    # every label_fusion_render_every steps (from step label_fusion_render_after on) one of them,
    # the least recently rendered, is rendered at every label_fusion_render_stride-th pixel; its
    # opaque pixels (opacity >= label_fusion_render_opacity) replace that keyframe's earlier votes,
    # and its rays look their labels up at that depth (geometry is never trained on it)
    label_fusion_rendered_depth: bool = False
    label_fusion_render_after: int = 1000
    label_fusion_render_every: int = 50
    label_fusion_render_stride: int = 4
    label_fusion_render_opacity: float = 0.95
    mixed_precision: Union[str, bool] = "auto"  # auto | true | false (bf16 autocast on CUDA for the hash field)
    cuda_graph: Union[str, bool] = "auto"  # auto | true | false: replay the training step from a CUDA graph (CUDA)
    eps_adam: float = 1e-15


@dataclass
class LoggingConfig:
    """Logging and checkpoint periods in steps (the seed's ``logging`` section)."""

    step_log_print: int = 1
    step_log_tfb: int = 500
    step_save_ckpt: int = 20000
    step_val: int = 5000
    step_vis_train: int = 5000


@dataclass
class MapperConfig:
    """Online keyframing, replay and the background training thread (this package's)."""

    keyframe_policy: str = "motion"  # motion | all (offline: every frame is a keyframe)
    min_translation: float = 0.10  # a frame within this many m of a buffered keyframe ...
    min_rotation_deg: float = 10.0  # ... and this many degrees of it ...
    max_overlap: float = 0.90  # ... whose views overlap by this much revisits it (not kept)
    max_keyframes: int = 200  # replay buffer bound
    eviction: str = "coverage"  # coverage | fifo
    recent_fraction: float = 0.25  # share of each ray batch from the newest keyframes
    recent_window: int = 4  # how many newest keyframes count as recent
    max_steps_per_second: float = 0.0  # background-thread throttle (0 = as fast as possible)
    yield_ms: float = 3.0  # pause after each eager background step so other threads get the GIL
    # GPU steps launched beyond the one running before the loop waits for the oldest: a frame's upload
    # or a view queues behind at most this many (1: views beside training 15.5 ms against 17.7 with 2,
    # the same training rate on an H200; 0 leaves the GPU idle between steps)
    max_steps_in_flight: int = 1
    switch_interval_ms: float = 0.5  # sys.setswitchinterval while training on a GPU (0 = leave Python's 5 ms)
    storage_device: str = "auto"  # where keyframe pixels live (auto = training device)
    # while training runs in the background (the node), a keyframe's label votes are cast on a
    # worker thread, so that taking a frame in costs its buffer insert only (false: cast in add_frame)
    defer_label_votes: bool = True
    # CUDA stream priority of the views (lower is higher; -1 the device's highest, 0 the default
    # stream's): a view's kernels get the multiprocessors the training step's wait for
    view_stream_priority: int = -1
    # a GPU view snapshots the weights at once (false: a weight may be the newest finished step's or
    # the one in flight) or after the training steps already queued (true: one step's weights; the
    # view waits 8-12 ms for them at full rate)
    views_wait_for_training: bool = False
    # while a view renders, the training loop launches no further step (the steps already in flight
    # still run; at most a quarter of its time): with max_steps_in_flight 1, views at 10 Hz beside
    # training 13.9 ms against 15.5, training 0.92 of its rate alone against 0.96 (H200, tenth session)
    views_pause_training: bool = True


@dataclass
class EngineConfig:
    """The engine's whole configuration, one typed section per section of the seed-compatible
    YAML.  The defaults are written once, in the section classes above; :data:`DEFAULTS` is
    their dict form, which :func:`load_config` / :func:`make_config` merge files and overrides
    onto (rejecting unknown keys with their name and coercing the seed's spellings).  Code
    reads either form: ``EngineConfig.from_dict(cfg).train.wgt_sem == cfg["train"]["wgt_sem"]``."""

    experiment: ExperimentConfig = field(default_factory=ExperimentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    render: RenderConfig = field(default_factory=RenderConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    mapper: MapperConfig = field(default_factory=MapperConfig)

    @classmethod
    def from_dict(cls, cfg: dict) -> "EngineConfig":
        """Typed sections of a full config dict (the output of :func:`make_config` or
        :func:`load_config`); a key that no section has raises :class:`ConfigError`."""
        try:
            model = dict(cfg["model"])
            hash_cfg = HashConfig(**model.pop("hash"))
            return cls(ExperimentConfig(**cfg["experiment"]), ModelConfig(**model, hash=hash_cfg),
                       RenderConfig(**cfg["render"]), TrainConfig(**cfg["train"]), LoggingConfig(**cfg["logging"]),
                       MapperConfig(**cfg["mapper"]))
        except (TypeError, KeyError) as exc:
            raise ConfigError(f"not a full engine config: {exc}") from exc

    def to_dict(self) -> dict:
        """The nested dict form (what :data:`DEFAULTS` is for the defaults)."""
        return asdict(self)


#: The defaults as a nested dict: the sections of the seed's ``SSR_room0_config.yaml`` plus
#: ``mapper`` (and the fast field's ``model.hash``), from the dataclasses above.
DEFAULTS: dict[str, Any] = EngineConfig().to_dict()

# Defaults that differ for the fast field (model.type: hash), applied under the
# user's file and overrides: the paper's learning rate and batch suit its MLPs,
# not a hash grid (measured on an H100: docs/benchmarks.md).
HASH_PRESET: dict[str, Any] = {
    # finest 2048 cells: ~1 cm in the 20 m cube that automatic bounds give with the 10 m far plane
    "model": {"chunk": 32768, "netchunk": 1048576, "hash": {"finest_resolution": 2048}},
    # half of each ray's samples at the grid's first surface: eight rooms, 10 s test mIoU 0.952
    # against 0.944 with even samples (docs/benchmarks.md, fourth session)
    "render": {"N_rays": 4096, "surface_sample_fraction": 0.5},
    "train": {"lrate": 1e-2, "lrate_decay": 100e3, "wgt_depth": 0.05, "label_fusion": True},
}

# ... and on a machine without a GPU, where the GPU-sized hash field takes
# ~10 s per step and a minute for its first occupancy update, a smaller field
# that keeps the node interactive (about 0.1 s per step on one core).
CPU_HASH_PRESET: dict[str, Any] = {
    "model": {"chunk": 8192, "netchunk": 65536,
              "hash": {"n_levels": 8, "log2_hashmap_size": 16, "finest_resolution": 512,
                       "hidden_dim": 32, "hidden_dim_color": 32, "hidden_dim_semantic": 32,
                       # the shared head on every level: a CPU run's ~1000 steps are short of
                       # capacity, not memorising noise (README demo: mIoU 0.717 with all levels,
                       # 0.655 with levels <= 64); the semantic loss may shape geometry
                       "semantic_branch": "shared", "semantic_max_resolution": 256}},
    "train": {"semantic_geometry_grad": True},
    # even samples: the surface share is measured on the GPU field only
    "render": {"N_rays": 512, "march_steps": 160, "max_samples_per_ray": 24, "occupancy_resolution": 48,
               "surface_sample_fraction": 0.0},
}

#: The evaluation protocols of ``semnerf-train --protocol``: ``seed`` reproduces the seed's
#: train_SSR_main.py where the two differ (docs/seed_parity.md), ``semnerf`` keeps this package's
#: choices (the online defaults).
PROTOCOLS = ("seed", "semnerf")

#: Config keys that ``--protocol seed`` sets, under the user's file and overrides: each step's
#: rays from one training image.  (The Replica split's 900 frames depend on the dataset type:
#: :data:`SEED_REPLICA_TOTAL_NUM`, applied by the trainer.)
SEED_PROTOCOL_PRESET: dict[str, Any] = {"render": {"no_batching": True}}

#: The seed's train_SSR_main.py splits Replica sequences over their first 900 frames.
SEED_REPLICA_TOTAL_NUM = 900

DATASET_TYPES = ("auto", "replica", "replica_nyu_cnn", "scannet")
NYU_MODES = ("auto", "nyu40", "nyu13", "nyu34", "gt_nyu13")


def default_protocol(model_type: str) -> str:
    """``seed`` for the paper's MLPs, ``semnerf`` for the fast field."""
    return "seed" if model_type == "nerf" else "semnerf"


# Keys whose values may be None or of several types.
_FREE_KEYS = {("render", "scene_bounds"), ("train", "mixed_precision"), ("train", "cuda_graph"),
              ("experiment", "gpu")}

_PRODUCT = re.compile(r"^\s*[0-9.eE+\-]+(\s*\*\s*[0-9.eE+\-]+)*\s*$")


def _parse_number(value: str) -> Optional[float]:
    """Parse the seed's numeric spellings: '5e-4', '250e3', '1024*128'."""
    if not _PRODUCT.match(value):
        return None
    out = 1.0
    try:
        for part in value.split("*"):
            out *= float(part)
    except ValueError:
        return None
    return out


def _coerce(path: str, default: Any, value: Any) -> Any:
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise ConfigError(f"{path}: expected true/false, got {value!r}")
    if isinstance(default, (int, float)):
        num = value
        if isinstance(value, str):
            num = _parse_number(value)
            if num is None:
                raise ConfigError(f"{path}: expected a number, got {value!r}")
        if isinstance(num, bool) or not isinstance(num, (int, float)):
            raise ConfigError(f"{path}: expected a number, got {value!r}")
        if not math.isfinite(num):
            raise ConfigError(f"{path}: must be finite, got {value!r}")
        if isinstance(default, int):
            if float(num) != int(num):
                raise ConfigError(f"{path}: expected an integer, got {value!r}")
            return int(num)
        return float(num)
    if isinstance(default, str):
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{path}: expected a string, got {value!r}")
    if isinstance(default, list):
        if not isinstance(value, (list, tuple)) or len(value) != len(default):
            raise ConfigError(f"{path}: expected a list of {len(default)} values, got {value!r}")
        return [_coerce(f"{path}[{i}]", d, v) for i, (d, v) in enumerate(zip(default, value))]
    return value


def merge(base: dict, override: dict, prefix: str = "") -> dict:
    """Deep-merge ``override`` onto a copy of ``base``, type-checking against base."""
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        path = f"{prefix}{key}"
        if key not in out:
            close = difflib.get_close_matches(str(key), list(out), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"unknown config key {path!r}{hint}")
        if isinstance(out[key], dict):
            if not isinstance(value, dict):
                raise ConfigError(f"{path}: expected a mapping, got {value!r}")
            out[key] = merge(out[key], value, prefix=path + ".")
        elif tuple(path.split(".")) in _FREE_KEYS:
            out[key] = value
        else:
            out[key] = _coerce(path, out[key], value)
    return out


def validate(cfg: dict) -> dict:
    """Cross-field checks; raises :class:`ConfigError`."""
    near, far = cfg["render"]["depth_range"]
    if not 0 <= near < far:
        raise ConfigError(f"render.depth_range must satisfy 0 <= near < far, got {[near, far]}")
    if cfg["model"]["type"] not in ("nerf", "hash"):
        raise ConfigError(f"model.type must be 'nerf' or 'hash', got {cfg['model']['type']!r}")
    if cfg["mapper"]["keyframe_policy"] not in ("motion", "all"):
        raise ConfigError("mapper.keyframe_policy must be 'motion' or 'all'")
    if cfg["mapper"]["eviction"] not in ("coverage", "fifo"):
        raise ConfigError("mapper.eviction must be 'coverage' or 'fifo'")
    if cfg["mapper"]["max_keyframes"] < 1:
        raise ConfigError("mapper.max_keyframes must be >= 1")
    if not 0.0 <= cfg["mapper"]["recent_fraction"] <= 1.0:
        raise ConfigError("mapper.recent_fraction must be in [0, 1]")
    if cfg["render"]["view_max_samples"] < 0:
        raise ConfigError(f"render.view_max_samples must be >= 0 (0 = max_samples_per_ray), got "
                          f"{cfg['render']['view_max_samples']}")
    if not 0.0 <= cfg["render"]["surface_sample_fraction"] <= 1.0:
        raise ConfigError(f"render.surface_sample_fraction must be in [0, 1], got "
                          f"{cfg['render']['surface_sample_fraction']}")
    if cfg["render"]["march_backend"] not in ("auto", "torch", "triton"):
        raise ConfigError("render.march_backend must be 'auto', 'torch' or 'triton', got "
                          f"{cfg['render']['march_backend']!r}")
    if cfg["render"]["view_head_samples"] < 0:
        raise ConfigError(f"render.view_head_samples must be >= 0 (0 = every sample), got "
                          f"{cfg['render']['view_head_samples']}")
    if cfg["render"]["view_path"] not in ("dense", "packed"):
        raise ConfigError(f"render.view_path must be 'dense' or 'packed', got {cfg['render']['view_path']!r}")
    if cfg["render"]["N_rays"] < 1 or cfg["render"]["N_samples"] < 2:
        raise ConfigError("render.N_rays must be >= 1 and render.N_samples >= 2")
    if cfg["experiment"]["width"] < 1 or cfg["experiment"]["height"] < 1:
        raise ConfigError("experiment.width and experiment.height must be positive")
    b = cfg["render"]["scene_bounds"]
    if not (b == "auto" or b is None):
        if not (isinstance(b, (list, tuple)) and len(b) == 6):
            raise ConfigError(f"render.scene_bounds must be 'auto' or 6 numbers, got {b!r}")
        vals = [float(x) for x in b]
        if not all(vals[i] < vals[i + 3] for i in range(3)):
            raise ConfigError(f"render.scene_bounds min must be below max, got {b!r}")
        cfg["render"]["scene_bounds"] = vals
    for key in ("mixed_precision", "cuda_graph"):
        value = cfg["train"][key]
        if value not in ("auto", True, False, "true", "false"):
            raise ConfigError(f"train.{key} must be auto, true or false, got {value!r}")
    if cfg["train"]["semantic_loss"] not in ("ce", "gce", "bootstrap"):
        raise ConfigError(f"train.semantic_loss must be ce, gce or bootstrap, got {cfg['train']['semantic_loss']!r}")
    tr = cfg["train"]
    if tr["label_fusion_render_every"] < 1 or tr["label_fusion_render_stride"] < 1 \
            or tr["label_fusion_render_after"] < 0 or not 0.0 < tr["label_fusion_render_opacity"] <= 1.0:
        raise ConfigError("train.label_fusion_render_every and _render_stride must be >= 1, _render_after >= 0 "
                          f"and _render_opacity in (0, 1]; got every {tr['label_fusion_render_every']}, stride "
                          f"{tr['label_fusion_render_stride']}, after {tr['label_fusion_render_after']}, opacity "
                          f"{tr['label_fusion_render_opacity']}")
    if not tr["label_fusion_cell"] > 0 or tr["label_fusion_min_count"] < 1 or tr["label_fusion_margin"] < 1 \
            or tr["label_fusion_stride"] < 1:
        raise ConfigError("train.label_fusion_cell must be > 0 m, train.label_fusion_min_count >= 1, "
                          f"train.label_fusion_margin >= 1 and train.label_fusion_stride >= 1; got cell "
                          f"{tr['label_fusion_cell']}, min_count {tr['label_fusion_min_count']}, margin "
                          f"{tr['label_fusion_margin']}, stride {tr['label_fusion_stride']}")
    if not 0.0 <= tr["label_fusion_keep_share"] <= 1.0:
        raise ConfigError(f"train.label_fusion_keep_share must be in [0, 1], got {tr['label_fusion_keep_share']}")
    if cfg["model"]["hash"]["semantic_branch"] not in ("shared", "grid"):
        raise ConfigError("model.hash.semantic_branch must be 'shared' or 'grid', got "
                          f"{cfg['model']['hash']['semantic_branch']!r}")
    exp = cfg["experiment"]
    if exp["convention"] not in ("opencv", "opengl"):
        raise ConfigError(f"experiment.convention must be 'opencv' or 'opengl', got {exp['convention']!r}")
    if exp["dataset_type"] not in DATASET_TYPES:
        raise ConfigError(f"experiment.dataset_type must be one of {', '.join(DATASET_TYPES)}, "
                          f"got {exp['dataset_type']!r}")
    if exp["nyu_mode"] not in NYU_MODES:
        raise ConfigError(f"experiment.nyu_mode must be one of {', '.join(NYU_MODES)}, got {exp['nyu_mode']!r}")
    if exp["sample_step"] < 0:
        raise ConfigError(f"experiment.sample_step must be >= 0 (0 = use train_step), got {exp['sample_step']}")
    if cfg["render"]["test_viz_factor"] < 1:
        raise ConfigError(f"render.test_viz_factor must be >= 1, got {cfg['render']['test_viz_factor']}")
    problems = unsupported_values(cfg)
    if problems:
        raise ConfigError("; ".join(problems))
    return cfg


def _layered(section: str, key: str, *layers: Optional[dict]):
    value = DEFAULTS[section][key]
    for layer in layers:
        if layer and isinstance(layer.get(section), dict) and key in layer[section]:
            value = layer[section][key]
    return value


def _runs_on_cpu(device) -> bool:
    device = str(device)
    if device == "auto":
        try:
            import torch

            return not torch.cuda.is_available()
        except ImportError:  # pragma: no cover - torch is a hard dependency
            return True
    return device.startswith("cpu")


def base_config(model_type: str, device="auto") -> dict:
    """The defaults for a model type and device: the seed's, plus
    :data:`HASH_PRESET` for 'hash', plus :data:`CPU_HASH_PRESET` when that
    field will run on the CPU."""
    if model_type != "hash":
        return copy.deepcopy(DEFAULTS)
    cfg = merge(DEFAULTS, HASH_PRESET)
    return merge(cfg, CPU_HASH_PRESET) if _runs_on_cpu(device) else cfg


def _base_for(*layers: Optional[dict]) -> dict:
    return base_config(_layered("model", "type", *layers), _layered("experiment", "device", *layers))


def overrides_from_items(items, base: Optional[dict] = None) -> dict:
    """``["train.wgt_depth=0.05", "model.hash.semantic_grid_cell=0.04"]`` (values in YAML) as
    the nested override dict that :func:`load_config` takes, merged into a copy of ``base``
    (the benchmarks' ``--set`` arguments)."""
    out = copy.deepcopy(base) if base else {}
    for item in items or ():
        key, sep, val = str(item).partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r}: expected SECTION.KEY=VALUE")
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = yaml.safe_load(val)
    return out


def make_config(override: Optional[dict] = None) -> dict:
    """Defaults (for the model type ``override`` names) merged with ``override``, validated.
    A complete config passes through unchanged."""
    return validate(merge(_base_for(override), override or {}))


def read_config_file(path) -> dict:
    """A YAML config file as a nested dict (not merged); :class:`ConfigError` naming the problem."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: top level must be a mapping of sections")
    return data


def user_keys(*layers: Optional[dict]) -> set:
    """``section.key`` names that the given nested mappings (a file's data, overrides) set."""
    out = set()
    for layer in layers:
        for section, body in (layer or {}).items():
            if isinstance(body, dict):
                out.update(f"{section}.{k}" for k in body)
    return out


#: Keys that only one field reads: set for the other, they change nothing (a warning names them).
NERF_ONLY_KEYS = (("model", "netdepth"), ("model", "netwidth"), ("model", "netdepth_fine"),
                  ("model", "netwidth_fine"), ("render", "N_samples"), ("render", "multires"),
                  ("render", "multires_views"), ("render", "raw_noise_std"))
HASH_ONLY_SECTIONS = (("model", "hash"),)


def unused_keys(cfg: dict, given: Optional[dict]) -> list:
    """Keys of ``given`` (a user's file or overrides, nested) that the model ``cfg`` selects
    does not read: the paper's MLP sizes and coarse/fine sampling for the fast field, the
    ``model.hash`` section for the paper's MLPs."""
    given = given or {}
    out = []
    if cfg["model"]["type"] == "hash":
        out = [f"{s}.{k}" for s, k in NERF_ONLY_KEYS if k in (given.get(s) or {})]
    else:
        out = [f"{s}.{k}" for s, k in HASH_ONLY_SECTIONS if k in (given.get(s) or {})]
    return out


def load_config(path=None, overrides: Optional[dict] = None, presets: Optional[dict] = None) -> dict:
    """Load a YAML config file (seed layout) onto the defaults, then apply
    ``overrides`` (a nested dict, e.g. from command-line flags).  ``presets`` (a nested dict,
    e.g. :data:`SEED_PROTOCOL_PRESET`) sit under the file and the overrides."""
    data: dict = read_config_file(path) if path is not None else {}
    source = str(path) if path is not None else "the overrides"
    problems = run_record_keys(data) + run_record_keys(overrides)
    if problems:
        raise ConfigError(f"{source}: " + "; ".join(problems))
    cfg = _base_for(presets, data, overrides)
    if presets:
        cfg = merge(cfg, presets)
    cfg = merge(cfg, data)
    if overrides:
        cfg = merge(cfg, overrides)
    ignored = unused_keys(cfg, data) + unused_keys(cfg, overrides)
    if ignored:
        log.warning("%s: %s not read by model.type %s (set for the other field; no effect)", source,
                    ", ".join(ignored), cfg["model"]["type"])
    return validate(cfg)


def save_config(cfg: dict, path) -> None:
    Path(path).write_text(yaml.safe_dump(cfg, sort_keys=False))
