"""Keyframe selection and the bounded replay buffer that training samples rays from.

* :class:`KeyframePolicy` decides whether an incoming frame adds enough new
  view to be kept.  A frame is redundant with a keyframe when it is within
  ``min_translation`` metres and ``min_rotation_deg`` degrees of it and their
  views overlap by at least ``max_overlap`` (fraction of a 16 x 12 grid of its
  pixels, back-projected at their depth — measured, or 2 m — that land inside
  the keyframe's image).  Given the buffered keyframes (:class:`KeyframeSet`),
  a frame is kept only when it is redundant with none of them, so a robot that
  loops through a room, or a looping bag, does not re-add the views it already
  has; without them, the test is against the last keyframe.  A frame that
  revisits a kept view is not kept: with independent per-pixel label noise it
  would add evidence, but duplicates fill the bounded buffer (a 30 Hz loop
  filled 200 slots with 60 distinct views in 10 s) and crowd out the coverage
  that multi-view denoising needs.  Nor does it vote in label fusion
  (:mod:`.label_fusion` counts the keyframes' labels only): at 30 Hz most frames
  are revisits, and the keyframes' votes alone give targets that are 99.5 %
  right (docs/benchmarks.md), so the extra votes would cost a back-projection
  per frame for little.
* :class:`ReplayBuffer` holds at most ``max_keyframes`` keyframes as stacked
  tensors on the training device (uint8 colour and labels, float16 depth) and
  samples ray batches mixing the newest keyframes with replayed older ones.
  When full, it evicts the keyframe whose pose is most redundant (closest to
  another keyframe's, in metres plus degrees / 30) so coverage of the scene is
  kept; ``fifo`` evicts the oldest instead.  The newest ``recent_window``
  keyframes are never evicted.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np
import torch

from .frame import Frame
from .geometry import Intrinsics, project_points, rotation_angle_deg

DEFAULT_OVERLAP_DEPTH = 2.0  # metres, when a frame has no depth


@dataclass(frozen=True)
class KeyframeSet:
    """The buffered keyframes as the policy sees them (an immutable snapshot, safe to read
    from any thread): ``ids`` (N,) keyframe ids, ``poses`` (N, 4, 4) float64 camera-to-world,
    ``intrinsics`` at the buffer's storage resolution (one camera model for all)."""

    ids: np.ndarray
    poses: np.ndarray
    intrinsics: Optional[Intrinsics]

    def __len__(self) -> int:
        return len(self.ids)


EMPTY_KEYFRAMES = KeyframeSet(np.zeros(0, dtype=np.int64), np.zeros((0, 4, 4)), None)


@dataclass
class RayBatch:
    """Training rays with their supervision (all tensors on one device).

    origins, dirs: (R, 3) world metres, directions with camera z = 1;
    rgb: (R, 3) float [0, 1]; labels: (R,) int64, 0 = void/unlabelled;
    depth: (R,) float metres, 0 = none, or None when no keyframe has depth;
    label_depth: (R,) float metres where label fusion looks the ray's label up: the measured
    depth, else the depth rendered for a keyframe without one (0 = none), or None when
    the buffer keeps no rendered depth.  Never supervises geometry.
    """

    origins: torch.Tensor
    dirs: torch.Tensor
    rgb: torch.Tensor
    labels: torch.Tensor
    depth: Optional[torch.Tensor]
    label_depth: Optional[torch.Tensor] = None

    def __len__(self) -> int:
        return self.origins.shape[0]


class KeyframePolicy:
    """Motion / overlap keyframe test against the last accepted keyframe."""

    def __init__(self, min_translation: float = 0.1, min_rotation_deg: float = 10.0, max_overlap: float = 0.9,
                 policy: str = "motion"):
        if policy not in ("motion", "all"):
            raise ValueError(f"keyframe policy must be 'motion' or 'all', got {policy!r}")
        self.min_translation = float(min_translation)
        self.min_rotation_deg = float(min_rotation_deg)
        self.max_overlap = float(max_overlap)
        self.policy = policy
        self.last_pose: Optional[np.ndarray] = None
        self.last_intrinsics: Optional[Intrinsics] = None

    def reset(self) -> None:
        self.last_pose = None
        self.last_intrinsics = None

    def overlap(self, pose, intrinsics: Intrinsics, depth: Optional[np.ndarray] = None,
                other_pose=None, other_intrinsics: Optional[Intrinsics] = None) -> float:
        """Fraction of a grid of this view's pixels visible in another view (default: the
        last keyframe)."""
        if other_pose is None:
            other_pose, other_intrinsics = self.last_pose, self.last_intrinsics
        if other_pose is None:
            return 0.0
        h, w = intrinsics.shape
        us = (np.arange(16) + 0.5) * w / 16 - 0.5
        vs = (np.arange(12) + 0.5) * h / 12 - 0.5
        uu, vv = np.meshgrid(us, vs)
        z = np.full(uu.shape, DEFAULT_OVERLAP_DEPTH)
        if depth is not None:
            d = depth[np.clip(np.round(vv).astype(int), 0, h - 1), np.clip(np.round(uu).astype(int), 0, w - 1)]
            z = np.where(np.isfinite(d) & (d > 0), d, DEFAULT_OVERLAP_DEPTH)
        pc = np.stack([(uu - intrinsics.cx) / intrinsics.fx * z, (vv - intrinsics.cy) / intrinsics.fy * z, z], -1)
        pc = pc.reshape(-1, 3)
        T = np.asarray(pose, dtype=np.float64)
        pw = pc @ T[:3, :3].T + T[:3, 3]
        k = other_intrinsics
        uv, zk = project_points(pw, other_pose, k)
        vis = (zk > 1e-3) & (uv[:, 0] >= -0.5) & (uv[:, 0] <= k.width - 0.5) & \
              (uv[:, 1] >= -0.5) & (uv[:, 1] <= k.height - 0.5)
        return float(vis.mean())

    def decide(self, pose, intrinsics: Intrinsics, depth: Optional[np.ndarray] = None,
               keyframes: Optional[KeyframeSet] = None) -> tuple[bool, str]:
        """(is_keyframe, reason); does not change state (see :meth:`accept`).  With
        ``keyframes``, the frame is tested against every buffered keyframe near it."""
        if self.policy == "all":
            return True, "every frame is a keyframe (policy 'all')"
        if keyframes is not None and len(keyframes):
            return self._decide_covisible(np.asarray(pose, dtype=np.float64), intrinsics, depth, keyframes)
        if self.last_pose is None:
            return True, "first frame"
        T = np.asarray(pose)
        dt = float(np.linalg.norm(T[:3, 3] - self.last_pose[:3, 3]))
        if dt >= self.min_translation:
            return True, f"moved {dt:.2f} m"
        dr = rotation_angle_deg(self.last_pose[:3, :3], T[:3, :3])
        if dr >= self.min_rotation_deg:
            return True, f"turned {dr:.1f} deg"
        ov = self.overlap(T, intrinsics, depth)
        if ov < self.max_overlap:
            return True, f"view overlap {ov:.2f} < {self.max_overlap:.2f}"
        return False, f"too close to the last keyframe ({dt:.2f} m, {dr:.1f} deg, overlap {ov:.2f})"

    def _decide_covisible(self, T: np.ndarray, intrinsics: Intrinsics, depth, kfs: KeyframeSet):
        dist = np.linalg.norm(kfs.poses[:, :3, 3] - T[:3, 3], axis=1)
        tr = np.einsum("nij,ij->n", kfs.poses[:, :3, :3], T[:3, :3])
        ang = np.degrees(np.arccos(np.clip((tr - 1.0) / 2.0, -1.0, 1.0)))
        near = np.flatnonzero((dist < self.min_translation) & (ang < self.min_rotation_deg))
        if near.size == 0:
            k = int(np.argmin(dist + ang / 30.0))
            return True, (f"new view: {dist[k]:.2f} m and {ang[k]:.1f} deg from the nearest of "
                          f"{len(kfs)} keyframes")
        best = 0.0
        for k in near[np.argsort(dist[near])]:
            ov = self.overlap(T, intrinsics, depth, kfs.poses[k], kfs.intrinsics)
            if ov >= self.max_overlap:
                return False, (f"revisits keyframe {int(kfs.ids[k])} ({dist[k]:.2f} m, {ang[k]:.1f} deg, "
                               f"overlap {ov:.2f})")
            best = max(best, ov)
        return True, f"view overlap {best:.2f} < {self.max_overlap:.2f} with the {near.size} keyframes near it"

    def accept(self, pose, intrinsics: Intrinsics) -> None:
        self.last_pose = np.asarray(pose, dtype=np.float64).copy()
        self.last_intrinsics = intrinsics

    def state_dict(self) -> dict:
        return {"last_pose": None if self.last_pose is None else torch.from_numpy(self.last_pose),
                "last_intrinsics": None if self.last_intrinsics is None else self.last_intrinsics.to_dict()}

    def load_state_dict(self, state: dict) -> None:
        lp = state.get("last_pose")
        self.last_pose = None if lp is None else lp.numpy().astype(np.float64)
        li = state.get("last_intrinsics")
        self.last_intrinsics = None if li is None else Intrinsics.from_dict(li)


class ReplayBuffer:
    """Bounded keyframe store on the training device; see the module docstring."""

    def __init__(self, max_keyframes: int, device, eviction: str = "coverage", recent_window: int = 4):
        if max_keyframes < 1:
            raise ValueError("max_keyframes must be >= 1")
        if eviction not in ("coverage", "fifo"):
            raise ValueError(f"eviction must be 'coverage' or 'fifo', got {eviction!r}")
        self.capacity = int(max_keyframes)
        self.device = torch.device(device)
        self.eviction = eviction
        self.recent_window = max(int(recent_window), 1)
        self.intrinsics: Optional[Intrinsics] = None  # storage resolution, fixed by the first keyframe
        self.rgb = self.labels = self.depth = None
        # depth rendered from the map for keyframes without a measured one (label fusion only;
        # allocated by the first set_label_depth)
        self.label_depth: Optional[torch.Tensor] = None
        self.poses = torch.zeros(self.capacity, 4, 4, device=self.device)
        self.K = torch.zeros(self.capacity, 4, device=self.device)  # fx, fy, cx, cy per slot
        # host copies: keyframe decisions and eviction never wait for the training device
        self.poses_host = np.zeros((self.capacity, 4, 4))
        self.K_host = np.zeros((self.capacity, 4))
        self.has_depth_host = np.zeros(self.capacity, dtype=bool)
        self._slots_dev = torch.zeros(0, dtype=torch.long, device=self.device)  # self.order on the device
        self._snapshot = EMPTY_KEYFRAMES
        self.has_depth = torch.zeros(self.capacity, dtype=torch.bool, device=self.device)
        self.slot_ids = [-1] * self.capacity  # keyframe id held by each slot, -1 = free
        self.slot_stamps = [0.0] * self.capacity
        self.order: list[int] = []  # slots, oldest first
        self.next_id = 0
        self.evicted = 0

    def __len__(self) -> int:
        return len(self.order)

    @property
    def keyframe_ids(self) -> list[int]:
        return [self.slot_ids[s] for s in self.order]

    def _allocate(self, intr: Intrinsics) -> None:
        h, w = intr.shape
        self.intrinsics = intr
        self.rgb = torch.zeros(self.capacity, h, w, 3, dtype=torch.uint8, device=self.device)
        self.labels = torch.zeros(self.capacity, h, w, dtype=torch.int16, device=self.device)
        self.depth = torch.zeros(self.capacity, h, w, dtype=torch.float16, device=self.device)

    def memory_bytes(self) -> int:
        # read without the map lock (stats()): the tensors are allocated one after another
        return sum(t.numel() * t.element_size() for t in (self.rgb, self.labels, self.depth, self.label_depth)
                   if t is not None)

    def set_label_depth(self, slot: int, depth: torch.Tensor, stride: int, offset: int = 0) -> None:
        """Store a depth rendered for ``slot`` at the pixels ``offset + stride * i`` of each axis
        ((rows, columns) metres, 0 = none) as that keyframe's label depth: every pixel takes the
        nearest rendered one's."""
        h, w = self.intrinsics.shape
        if self.label_depth is None:
            self.label_depth = torch.zeros(self.capacity, h, w, dtype=torch.float16, device=self.device)
        depth = depth.to(self.device, torch.float16)

        def nearest(n: int, m: int) -> torch.Tensor:
            i = torch.round((torch.arange(n, device=self.device, dtype=torch.float32) - offset) / stride)
            return i.clamp(0, m - 1).long()

        self.label_depth[slot] = depth[nearest(h, depth.shape[0])][:, nearest(w, depth.shape[1])]

    def _fit(self, frame: Frame):
        """Frame arrays at the storage resolution, with matching intrinsics."""
        intr = frame.intrinsics
        rgb = frame.rgb if frame.rgb.dtype == np.uint8 else (np.clip(frame.rgb, 0, 1) * 255 + 0.5).astype(np.uint8)
        labels = frame.labels
        depth = frame.depth_valid()
        h, w = self.intrinsics.shape
        if intr.shape != (h, w):

            rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)
            if labels is not None:
                labels = cv2.resize(labels.astype(np.int32), (w, h), interpolation=cv2.INTER_NEAREST)
            if depth is not None:
                depth = cv2.resize(depth, (w, h), interpolation=cv2.INTER_NEAREST)
            intr = intr.resized(w, h)
        return rgb, labels, depth, intr

    def _evict_slot(self) -> int:
        candidates = self.order[:-self.recent_window] if len(self.order) > self.recent_window else self.order[:1]
        if self.eviction == "fifo" or len(candidates) < 2:
            return candidates[0]
        P = self.poses_host[self.order]
        pos = P[:, :3, 3]
        dist = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
        # rotation angle between every pair: arccos((trace(Ra^T Rb) - 1) / 2)
        tr = np.einsum("aij,bij->ab", P[:, :3, :3], P[:, :3, :3])
        ang = np.degrees(np.arccos(np.clip((tr - 1) / 2, -1, 1)))
        d = dist + ang / 30.0
        np.fill_diagonal(d, np.inf)
        nearest = d.min(axis=1)[: len(candidates)]
        return candidates[int(np.argmin(nearest))]

    def add(self, frame: Frame) -> tuple[int, Optional[int]]:
        """Store a keyframe; returns (its id, id of the evicted keyframe or None)."""
        if self.intrinsics is None:
            self._allocate(frame.intrinsics)
        rgb, labels, depth, intr = self._fit(frame)
        evicted = None
        if len(self.order) < self.capacity:
            slot = next(i for i, k in enumerate(self.slot_ids) if k < 0)
        else:
            slot = self._evict_slot()
            evicted = self.slot_ids[slot]
            self.order.remove(slot)
            self.evicted += 1
        self.rgb[slot] = torch.from_numpy(np.ascontiguousarray(rgb)).to(self.device)
        if labels is None:
            self.labels[slot] = 0
        else:
            self.labels[slot] = torch.from_numpy(labels.astype(np.int16)).to(self.device)
        if self.label_depth is not None:
            self.label_depth[slot] = 0
        if depth is None:
            self.depth[slot] = 0
            self.has_depth[slot] = False
        else:
            self.depth[slot] = torch.from_numpy(depth).to(self.device, torch.float16)
            self.has_depth[slot] = True
        self.poses[slot] = torch.as_tensor(frame.pose, dtype=torch.float32, device=self.device)
        self.K[slot] = torch.tensor([intr.fx, intr.fy, intr.cx, intr.cy], device=self.device)
        self.poses_host[slot] = np.asarray(frame.pose, dtype=np.float32)  # as stored on the device
        self.K_host[slot] = (intr.fx, intr.fy, intr.cx, intr.cy)
        self.has_depth_host[slot] = depth is not None
        kid = self.next_id
        self.next_id += 1
        self.slot_ids[slot] = kid
        self.slot_stamps[slot] = float(frame.stamp)
        self.order.append(slot)
        self.publish_snapshot()
        return kid, evicted

    def sample(self, n_rays: int, recent_fraction: float = 0.25,
               generator: Optional[torch.Generator] = None) -> RayBatch:
        """A batch of ``n_rays`` random pixels: ``recent_fraction`` of them from the
        newest ``recent_window`` keyframes, the rest from all keyframes."""
        if not self.order:
            raise RuntimeError("the replay buffer is empty")
        dev = self.device
        n_recent = int(round(n_rays * recent_fraction)) if len(self.order) > self.recent_window else 0
        pick = torch.randint(0, len(self.order), (n_rays - n_recent,), device=dev, generator=generator)
        if n_recent:
            lo = len(self.order) - self.recent_window
            pick = torch.cat([pick, torch.randint(lo, len(self.order), (n_recent,), device=dev, generator=generator)])
        h, w = self.intrinsics.shape
        v = torch.randint(0, h, (n_rays,), device=dev, generator=generator)
        u = torch.randint(0, w, (n_rays,), device=dev, generator=generator)
        return self._ray_batch(self._slots_dev[pick], v, u)

    # -- the seed's sampling (render.no_batching: true); kept apart from sample() on purpose
    def sample_image(self, n_rays: int, generator: Optional[torch.Generator] = None) -> RayBatch:
        """A batch of ``n_rays`` rays all from **one** keyframe, drawn uniformly, at pixels drawn
        uniformly with replacement: the seed's ``sampling_index`` (``np.random.choice`` of one
        training image, ``torch.randint(0, H*W, (n_rays,))`` pixels).  An unlabelled keyframe
        gives an all-void batch, so the semantic loss of that step is 0, as the seed skips it."""
        if not self.order:
            raise RuntimeError("the replay buffer is empty")
        dev = self.device
        h, w = self.intrinsics.shape
        pick = torch.randint(0, len(self.order), (1,), device=dev, generator=generator)
        kf = self._slots_dev[pick].expand(n_rays)
        pix = torch.randint(0, h * w, (n_rays,), device=dev, generator=generator)
        return self._ray_batch(kf, pix // w, pix % w)

    def _ray_batch(self, kf: torch.Tensor, v: torch.Tensor, u: torch.Tensor) -> RayBatch:
        """Rays and supervision of the pixels (v, u) of the keyframe slots ``kf``.  Nothing is
        read back from the device (the slots and which keyframes have depth are known on the
        host), so sampling never waits for training steps still running on a GPU."""
        n = kf.shape[0]
        K = self.K[kf]
        d_cam = torch.stack([(u.float() - K[:, 2]) / K[:, 0], (v.float() - K[:, 3]) / K[:, 1],
                             torch.ones(n, device=self.device)], -1)
        T = self.poses[kf]
        depth = label_depth = None
        if bool(self.has_depth_host[self.order].any()):
            depth = self.depth[kf, v, u].float()
        if self.label_depth is not None:
            label_depth = self.label_depth[kf, v, u].float()
            if depth is not None:
                label_depth = torch.where(self.has_depth[kf], depth, label_depth)
        return RayBatch(origins=T[:, :3, 3].contiguous(), dirs=torch.einsum("nij,nj->ni", T[:, :3, :3], d_cam),
                        rgb=self.rgb[kf, v, u].float() / 255.0, labels=self.labels[kf, v, u].long(), depth=depth,
                        label_depth=label_depth)

    def clear(self) -> None:
        self.__init__(self.capacity, self.device, self.eviction, self.recent_window)

    def keyframe_set(self) -> KeyframeSet:
        """The stored keyframes' ids, poses and intrinsics (oldest first): an immutable
        snapshot replaced after every change, so any thread may read it without a lock."""
        return self._snapshot

    def publish_snapshot(self) -> None:
        """Replace the snapshot that :meth:`keyframe_set` returns, and the device copy of the
        slot order that sampling indexes (after any change)."""
        self._slots_dev = torch.tensor(self.order, dtype=torch.long, device=self.device)
        if not self.order:
            self._snapshot = EMPTY_KEYFRAMES
            return
        fx, fy, cx, cy = (float(v) for v in self.K_host[self.order[-1]])
        h, w = self.intrinsics.shape
        self._snapshot = KeyframeSet(np.array([self.slot_ids[i] for i in self.order], dtype=np.int64),
                                     self.poses_host[self.order].copy(), Intrinsics(fx, fy, cx, cy, w, h))

    def state_dict(self) -> dict:
        """CPU tensors of the stored keyframes, oldest first (for map files)."""
        if not self.order:
            return {"count": 0}
        s = torch.tensor(self.order)
        return {
            "count": len(self.order),
            "intrinsics": self.intrinsics.to_dict(),
            "rgb": self.rgb[s].cpu(), "labels": self.labels[s].cpu(), "depth": self.depth[s].cpu(),
            "has_depth": self.has_depth[s].cpu(), "poses": self.poses[s].cpu(), "K": self.K[s].cpu(),
            "ids": torch.tensor([self.slot_ids[i] for i in self.order]),
            "stamps": torch.tensor([self.slot_stamps[i] for i in self.order], dtype=torch.float64),
            "next_id": self.next_id, "evicted": self.evicted,
        }

    def load_state_dict(self, state: dict) -> None:
        self.clear()
        n = int(state.get("count", 0))
        if n == 0:
            return
        if n > self.capacity:
            raise ValueError(f"saved map holds {n} keyframes but max_keyframes is {self.capacity}")
        self._allocate(Intrinsics.from_dict(state["intrinsics"]))
        self.rgb[:n] = state["rgb"].to(self.device)
        self.labels[:n] = state["labels"].to(self.device)
        self.depth[:n] = state["depth"].to(self.device)
        self.has_depth[:n] = state["has_depth"].to(self.device)
        self.poses[:n] = state["poses"].to(self.device)
        self.K[:n] = state["K"].to(self.device)
        self.poses_host[:n] = state["poses"].numpy()
        self.K_host[:n] = state["K"].numpy()
        self.has_depth_host[:n] = state["has_depth"].numpy()
        ids = state["ids"].tolist()
        stamps = state["stamps"].tolist()
        for i in range(n):
            self.slot_ids[i] = int(ids[i])
            self.slot_stamps[i] = float(stamps[i])
        self.order = list(range(n))
        self.next_id = int(state["next_id"])
        self.evicted = int(state["evicted"])
        self.publish_snapshot()
