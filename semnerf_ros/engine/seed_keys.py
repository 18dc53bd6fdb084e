"""Every key of the seed's config files, and what this package does with it.

The seed (Harry-Zhi/semantic_nerf) reads ``SSR/configs/SSR_room0_config.yaml`` and
``SSR_ScanNet_config.yaml`` (plus ``experiment.nyu_mode`` / ``load_softmax`` for its
``replica_nyu_cnn`` dataset).  Each key is either honoured (:data:`SEED_KEYS` says how) or, for the
values this package cannot reproduce, rejected with a message that says why
(:func:`unsupported_values`).  The seed also copies its command-line flags into the
``experiment`` section of the ``exp_config.yaml`` it saves; such a file is refused with a message
naming the flag to pass instead (:func:`run_record_keys`).  :mod:`.config` raises the
``ConfigError``; ``docs/seed_parity.md`` is the table for users.
"""
from __future__ import annotations

from typing import Any, Optional

#: section.key -> how it is honoured here (every key of the seed's config files)
SEED_KEYS: dict[str, str] = {
    "experiment.scene_file": "Replica's habitat folder: class names from its info_semantic.json, as the seed "
                             "(a missing folder: a warning, names from the dataset folder)",
    "experiment.save_dir": "output folder",
    "experiment.dataset_dir": "dataset folder",
    "experiment.convention": "camera axes of the dataset's poses: opencv, or opengl (x right, y up, z back; "
                             "converted to OpenCV on loading)",
    "experiment.width": "image width (px)",
    "experiment.height": "image height (px)",
    "experiment.gpu": "CUDA_VISIBLE_DEVICES before CUDA starts (the seed's select_gpus); --gpu wins",
    "experiment.enable_semantic": "false trains a plain NeRF: no labels, no semantic loss, no semantic scores",
    "experiment.enable_depth": "false: the map gets no depth (the images still score depth); the seed reads the "
                               "key but never uses it",
    "experiment.endpoint_feat": "false only (true is rejected: see UNSUPPORTED)",
    "experiment.sample_step": "ScanNet split: every sample_step-th valid frame trains, sample_step // 2 after "
                              "it tests (the seed's; 0 = experiment.train_step / test_offset)",
    "experiment.nyu_mode": "label set: nyu40 / nyu13 for ScanNet, nyu13 / nyu34 / gt_nyu13 for replica_nyu_cnn",
    "experiment.load_softmax": "false only (true is rejected: see UNSUPPORTED)",
    "model.netdepth": "coarse MLP depth",
    "model.netwidth": "coarse MLP width",
    "model.netdepth_fine": "fine MLP depth",
    "model.netwidth_fine": "fine MLP width",
    "model.chunk": "rays per render pass (memory only; the paper's MLPs render views 16384 rays at a time)",
    "model.netchunk": "points per MLP pass (memory only)",
    "render.N_rays": "rays per training step",
    "render.N_samples": "coarse stratified samples per ray",
    "render.N_importance": "fine importance samples per ray",
    "render.perturb": "stratified jitter and random importance samples in training (> 0)",
    "render.use_viewdirs": "view-dependent colour branch",
    "render.i_embed": "0 (any value but -1): the positional encoding; -1 is rejected (see UNSUPPORTED)",
    "render.multires": "position encoding frequencies",
    "render.multires_views": "direction encoding frequencies",
    "render.raw_noise_std": "noise on raw density in training",
    "render.test_viz_factor": "evaluation views rendered at 1/factor of the resolution (under --protocol seed "
                              "with the seed's downsampling of the ground truth)",
    "render.no_batching": "true: each step's rays from one training image (the seed's sampling); false: from "
                          "all training frames",
    "render.depth_range": "near and far (m)",
    "render.white_bkgd": "composite on white",
    "train.lrate": "learning rate",
    "train.lrate_decay": "steps for a tenfold decay",
    "train.N_iters": "training steps",
    "train.wgt_sem": "semantic loss weight",
    "logging.step_log_print": "progress-bar update interval",
    "logging.step_log_tfb": "TensorBoard scalar interval (with the optional tensorboard package)",
    "logging.step_save_ckpt": "checkpoint interval",
    "logging.step_val": "test-view evaluation interval",
    "logging.step_vis_train": "training-view evaluation interval",
}

#: (section.key, value) -> why that value is not supported
UNSUPPORTED: dict[tuple, str] = {
    ("experiment.endpoint_feat", True):
        "experiment.endpoint_feat: true is not supported: in the seed it only adds the fine MLP's last "
        "128 hidden features to the render output for its own analysis; nothing trains on or saves them",
    ("experiment.load_softmax", True):
        "experiment.load_softmax: true is not supported: the seed loads the CNN's softmax maps but never "
        "uses them in training or scoring (and its loader fails on the key: cnn_softmax_dir is never set)",
    ("render.i_embed", -1):
        "render.i_embed: -1 (the seed's option of no positional encoding) is not supported: the paper's "
        "MLP here always encodes positions (i_embed 0); a field without the encoding cannot fit a room",
}

#: the seed's train_SSR_main.py flags, which it copies into the experiment section of the
#: exp_config.yaml it saves (flag name -> what to pass here instead)
SEED_RUN_RECORD_KEYS: dict[str, str] = {
    **{k: f"--{k}" for k in (
        "sparse_views", "sparse_ratio", "label_map_ids", "random_sample", "pixel_denoising",
        "pixel_noise_ratio", "region_denoising", "region_noise_ratio", "uniform_flip", "instance_id",
        "super_resolution", "dense_sr", "sr_factor", "label_propagation", "partial_perc", "visualise_save",
        "load_saved", "config_file")},
    "train_ids": "experiment.train_step / test_offset / total_num (or sample_step)",
    "test_ids": "experiment.train_step / test_offset / total_num (or sample_step)",
}


def run_record_keys(data: Optional[dict]) -> list:
    """Messages for the keys of ``data`` (a nested config mapping) that are the seed's
    command-line flags as its saved ``exp_config.yaml`` records them."""
    exp = (data or {}).get("experiment")
    if not isinstance(exp, dict):
        return []
    return [f"experiment.{k} is a train_SSR_main.py flag that the seed copies into its saved exp_config.yaml; "
            f"it is not a config key here: pass {SEED_RUN_RECORD_KEYS[k]} instead (and remove the key)"
            for k in exp if k in SEED_RUN_RECORD_KEYS]


def _value(cfg: dict, name: str) -> Any:
    section, key = name.split(".")
    return cfg.get(section, {}).get(key)


def unsupported_values(cfg: dict) -> list:
    """Messages for the seed-key values of a merged config that this package rejects."""
    out = []
    for (name, value), why in UNSUPPORTED.items():
        v = _value(cfg, name)
        if v is not None and not isinstance(v, bool) and isinstance(value, bool):
            continue
        if v == value and type(v) is type(value):
            out.append(why)
    return out
