"""Keys of the seed's config files (``SSR_room0_config.yaml``) that this package accepts, so a
seed file loads unchanged, but does not read: setting one changes nothing, and the loader says so
by name (:func:`warn_unread_keys`).  Another engineer may honour some of them later for parity
with the seed; until then a warning is the honest answer."""
from __future__ import annotations

import logging
from typing import Optional

log = logging.getLogger("semnerf_ros.config")

#: section.key -> why it has no effect here
UNREAD_SEED_KEYS: dict[str, str] = {
    "experiment.scene_file": "meshes come from the field (semnerf-mesh), not from a habitat scene",
    "experiment.convention": "poses are read as OpenCV optical camera-to-world (docs/architecture.md)",
    "experiment.endpoint_feat": "the seed's end-point feature option is not implemented",
    "experiment.gpu": "select the GPU with --gpu or experiment.device (cuda:N)",
    "render.i_embed": "the positional encoding is always the paper's (i_embed 0)",
    "logging.step_log_tfb": "no TensorBoard log is written (metrics.json instead)",
    "logging.step_vis_train": "training views are rendered at each evaluation (logging.step_val)",
}


def unread_keys(data: Optional[dict]) -> list:
    """The :data:`UNREAD_SEED_KEYS` that ``data`` (a nested config mapping) sets."""
    out = []
    for name in UNREAD_SEED_KEYS:
        section, key = name.split(".")
        sec = (data or {}).get(section)
        if isinstance(sec, dict) and key in sec:
            out.append(name)
    return out


def warn_unread_keys(data: Optional[dict], source: str) -> list:
    """Log one warning naming every unread seed key ``data`` sets (``source``: where it came
    from); returns their names."""
    names = unread_keys(data)
    if names:
        log.warning("%s sets config keys this package accepts but does not read (no effect): %s", source,
                    "; ".join(f"{n} ({UNREAD_SEED_KEYS[n]})" for n in names))
    return names
