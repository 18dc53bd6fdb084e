"""Import a checkpoint of the seed (Semantic-NeRF's ``<save_dir>/checkpoints/<step>.ckpt``) into a map.

The seed saves (``SSRTrainer.step``) ``torch.save({"global_step", "network_coarse_state_dict",
"network_fine_state_dict", "optimizer_state_dict"})``: the state dicts of its two
``Semantic_NeRF`` MLPs and of the Adam optimiser over the coarse then the fine parameters.  Its
MLP is the paper's, which :class:`~semnerf_ros.engine.fields.semantic_nerf.SemanticNeRFMLP`
implements with the same layers and the same positional encoding (positions divided by 10); only
some module names differ:

========================================  =====================================
seed (``Semantic_NeRF``)                  here (``SemanticNeRFMLP``)
========================================  =====================================
``pts_linears.<i>``                       ``pts_linears.<i>``
``alpha_linear``                          ``alpha_linear``
``feature_linear``                        ``feature_linear``
``views_linears.0``                       ``views_linear``
``rgb_linear``                            ``rgb_linear``
``semantic_linear.0.0`` (Linear in fc_block)  ``semantic_linear.0``
``semantic_linear.1``                     ``semantic_linear.2``
========================================  =====================================

The architecture (depth, width, encoding frequencies, classes) is read from the weights' shapes;
the semantic head predicts the valid classes (void excluded), so a map of ``C + 1`` classes.  The
optimiser's moments are carried over (reordered to this model's parameters), so training can go on once
keyframes are added.
The seed's ``use_viewdirs: false`` MLP (a single output layer, no semantic head) is refused.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from .config import ConfigError, make_config, merge
from .mapper import Mapper

log = logging.getLogger("semnerf_ros.seed_checkpoint")

#: the keys of the seed's checkpoint dict
SEED_CHECKPOINT_KEYS = ("global_step", "network_coarse_state_dict", "network_fine_state_dict",
                        "optimizer_state_dict")
#: seed module prefix -> ours (the rest of a name stays)
_RENAMES = (("views_linears.0.", "views_linear."), ("semantic_linear.0.0.", "semantic_linear.0."),
            ("semantic_linear.1.", "semantic_linear.2."))


class SeedCheckpointError(ValueError):
    """A file that is not a seed checkpoint of the paper's MLPs, or does not fit the map asked for."""


def read_seed_checkpoint(path) -> dict:
    """The checkpoint dict (tensors on the CPU); :class:`SeedCheckpointError` naming what is wrong."""
    p = Path(path)
    if not p.is_file():
        raise SeedCheckpointError(f"seed checkpoint not found: {p}")
    try:
        ckpt = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's input
        raise SeedCheckpointError(f"{p}: not a readable torch checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(ckpt, dict) or "network_coarse_state_dict" not in ckpt:
        keys = list(ckpt)[:8] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise SeedCheckpointError(f"{p}: not a Semantic-NeRF checkpoint: expected the keys {SEED_CHECKPOINT_KEYS}, "
                                  f"found {keys}")
    return ckpt


def seed_architecture(state: dict) -> dict:
    """``netdepth``, ``netwidth``, ``multires``, ``multires_views``, ``num_valid_classes`` of one
    of the seed's MLP state dicts (from the weights' shapes)."""
    if "output_linear.weight" in state:
        raise SeedCheckpointError("the checkpoint's MLP was trained with use_viewdirs: false (one output layer, no "
                                  "semantic head); only the paper's MLP (use_viewdirs: true) can be imported")
    need = ("pts_linears.0.weight", "alpha_linear.weight", "views_linears.0.weight", "rgb_linear.weight")
    missing = [k for k in need if k not in state]
    if missing:
        raise SeedCheckpointError(f"not the paper's Semantic-NeRF MLP: no {missing}")
    depth = len({k.split(".")[1] for k in state if k.startswith("pts_linears.")})
    width, in_ch = state["pts_linears.0.weight"].shape
    views_in = state["views_linears.0.weight"].shape[1] - width
    if (in_ch - 3) % 6 or (views_in - 3) % 6:
        raise SeedCheckpointError(f"input sizes {in_ch} / {views_in} are not positional encodings of 3-vectors")
    sem = state.get("semantic_linear.1.weight")
    return {"netdepth": int(depth), "netwidth": int(width), "multires": int((in_ch - 3) // 6),
            "multires_views": int((views_in - 3) // 6),
            "num_valid_classes": int(sem.shape[0]) if sem is not None else 0}


def convert_state_dict(state: dict) -> dict:
    """One of the seed's MLP state dicts with this package's module names."""
    out = {}
    for name, value in state.items():
        for old, new in _RENAMES:
            if name.startswith(old):
                name = new + name[len(old):]
                break
        out[name] = value
    return out


def _optimizer_state(seed_opt: dict, seed_names: list, our_names: list) -> Optional[dict]:
    """The seed's Adam state reindexed onto our parameter order (None when it does not fit)."""
    groups = seed_opt.get("param_groups") or []
    if len(groups) != 1 or len(groups[0].get("params", [])) != len(seed_names):
        return None
    ids = groups[0]["params"]
    index_of = {name: i for i, name in enumerate(our_names)}
    if set(index_of) != set(seed_names):
        return None
    state = {}
    for k, name in enumerate(seed_names):
        st = seed_opt.get("state", {}).get(ids[k])
        if st is not None:
            state[index_of[name]] = st
    group = dict(groups[0], params=list(range(len(our_names))))
    return {"state": state, "param_groups": [group]}


def import_seed_checkpoint(path, cfg: Optional[dict] = None, class_names: Optional[Sequence[str]] = None,
                           bounds=None, device="cpu") -> Mapper:
    """A :class:`Mapper` (no keyframes) holding the seed checkpoint's MLPs, ready to render, mesh,
    save (a map file for the node's ``~/load_map``) or train on.

    ``cfg``: a config (the seed's file) for the rendering settings; the MLP sizes and encodings
    come from the checkpoint (a differing value in ``cfg`` is replaced, with a warning).
    ``class_names``: the names of the checkpoint's ``C + 1`` classes, void first (default
    ``class_<i>``).  ``bounds`` (2, 3): the scene box in world metres (meshing's default region).
    """
    ckpt = read_seed_checkpoint(path)
    coarse, fine = ckpt["network_coarse_state_dict"], ckpt.get("network_fine_state_dict")
    arch = seed_architecture(coarse)
    arch_fine = seed_architecture(fine) if fine is not None else None
    if arch["num_valid_classes"] < 1:
        raise SeedCheckpointError(f"{path}: the MLP has no semantic head (trained with enable_semantic: false); "
                                  "a semantic map needs one")
    if bounds is None:
        raise SeedCheckpointError("a map needs the scene bounds: give the training data (its cameras and depth) "
                                  "or the bounds")
    model = {"type": "nerf", "netdepth": arch["netdepth"], "netwidth": arch["netwidth"]}
    render = {"multires": arch["multires"], "multires_views": arch["multires_views"], "use_viewdirs": True}
    if arch_fine is not None:
        model.update(netdepth_fine=arch_fine["netdepth"], netwidth_fine=arch_fine["netwidth"])
    base = make_config(cfg or {})
    if arch_fine is None:
        render["N_importance"] = 0
    elif base["render"]["N_importance"] == 0:
        render["N_importance"] = 128
    differ = [f"{sec}.{k}: {base[sec][k]} -> {v}" for sec, part in (("model", model), ("render", render))
              for k, v in part.items() if base[sec][k] != v]
    if differ and cfg:
        log.warning("%s: the checkpoint's MLPs set %s", path, "; ".join(differ))
    try:
        full = make_config(merge(base, {"model": model, "render": render}))
    except ConfigError as exc:
        raise SeedCheckpointError(f"{path}: {exc}") from exc
    n_classes = arch["num_valid_classes"] + 1
    if class_names is not None and len(class_names) != n_classes:
        raise SeedCheckpointError(f"{path}: the checkpoint predicts {n_classes - 1} classes (+ void) but "
                                  f"{len(class_names)} class names were given (void included)")
    mapper = Mapper(full, n_classes, class_names, device=device, bounds=np.asarray(bounds, dtype=np.float64))
    nets = [(mapper.model.coarse, coarse, "coarse")] + ([(mapper.model.fine, fine, "fine")] if fine is not None else [])
    for net, state, what in nets:
        try:
            net.load_state_dict({k: v.to(mapper.device) for k, v in convert_state_dict(state).items()})
        except RuntimeError as exc:
            raise SeedCheckpointError(f"{path}: the {what} MLP does not fit the paper's architecture: {exc}") from exc
    seed_names = [f"coarse.{k}" for k in convert_state_dict(coarse)] + \
        ([f"fine.{k}" for k in convert_state_dict(fine)] if fine is not None else [])
    our_names = [n for n, _ in mapper.model.named_parameters()]
    opt = _optimizer_state(ckpt.get("optimizer_state_dict") or {}, seed_names, our_names)
    if opt is not None:
        try:
            mapper.trainer.load_state_dict(opt)
        except (ValueError, RuntimeError, KeyError) as exc:
            log.warning("%s: the optimiser state was not carried over (%s); training would restart Adam", path, exc)
    else:
        log.warning("%s: the optimiser state does not match the MLPs' parameters; not carried over", path)
    # the seed saves after the optimisation step numbered global_step (counted from 0)
    mapper.step_count = int(ckpt.get("global_step", 0)) + 1
    return mapper
