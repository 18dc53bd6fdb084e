"""Camera intrinsics, pose checks and conversions, and ray generation.

Conventions (the whole engine):

* Poses are 4x4 **camera-to-world** transforms in metres (``T_world_camera``).
* The camera frame is OpenCV / ROS *optical*: x right, y down, z forward
  (the seed's Replica ``traj_w_c.txt`` convention).
* Ray directions are scaled so that their camera-frame z component is 1, so a
  ray parameter ``t`` *is* the z-depth of the point (what depth images hold);
  view directions given to the field are the unit-length versions.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from scipy.spatial.transform import Rotation

# Rotation taking optical-frame vectors into a REP-103 body frame (x forward,
# y left, z up): columns are the optical x (right), y (down), z (forward) axes
# written in body coordinates.  T_world_optical = T_world_body @ BODY_FROM_OPTICAL.
BODY_FROM_OPTICAL = np.array(
    [[0.0, 0.0, 1.0],
     [-1.0, 0.0, 0.0],
     [0.0, -1.0, 0.0]]
)


class PoseError(ValueError):
    """A pose that is not a finite rigid transform."""


class IntrinsicsError(ValueError):
    """Camera intrinsics that cannot describe a pinhole camera."""


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics in pixels for an image of ``width`` x ``height``.

    ``cx, cy`` follow the OpenCV convention (pixel centres at integer
    coordinates, so the image centre of a W-wide image is ``(W - 1) / 2``
    when the principal point is centred).
    """

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        vals = (self.fx, self.fy, self.cx, self.cy)
        if not all(math.isfinite(v) for v in vals):
            raise IntrinsicsError(f"intrinsics must be finite, got {self}")
        if self.fx <= 0 or self.fy <= 0:
            raise IntrinsicsError(f"focal lengths must be positive, got fx={self.fx}, fy={self.fy}")
        if int(self.width) <= 0 or int(self.height) <= 0:
            raise IntrinsicsError(f"image size must be positive, got {self.width}x{self.height}")

    @property
    def K(self) -> np.ndarray:
        """3x3 calibration matrix."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width), as numpy images are indexed."""
        return int(self.height), int(self.width)

    def scaled(self, factor: float) -> "Intrinsics":
        """Intrinsics of the same camera resampled by ``factor`` (0.5 halves the size).

        Pixel-centre aware: a pixel centre u maps to (u + 0.5) * factor - 0.5.
        """
        if factor <= 0:
            raise IntrinsicsError(f"scale factor must be positive, got {factor}")
        w = max(1, int(round(self.width * factor)))
        h = max(1, int(round(self.height * factor)))
        sx, sy = w / self.width, h / self.height
        return Intrinsics(self.fx * sx, self.fy * sy, (self.cx + 0.5) * sx - 0.5,
                          (self.cy + 0.5) * sy - 0.5, w, h)

    def resized(self, width: int, height: int) -> "Intrinsics":
        """Intrinsics for the same camera resampled to ``width`` x ``height``."""
        sx, sy = width / self.width, height / self.height
        return Intrinsics(self.fx * sx, self.fy * sy, (self.cx + 0.5) * sx - 0.5,
                          (self.cy + 0.5) * sy - 0.5, int(width), int(height))

    @classmethod
    def from_hfov(cls, width: int, height: int, hfov_deg: float = 90.0) -> "Intrinsics":
        """Square-pixel intrinsics with a centred principal point, as the seed
        derives them for Replica (hfov 90 degrees)."""
        f = width / 2.0 / math.tan(math.radians(hfov_deg) / 2.0)
        return cls(f, f, (width - 1) / 2.0, (height - 1) / 2.0, int(width), int(height))

    @classmethod
    def from_K(cls, K, width: int, height: int) -> "Intrinsics":
        K = np.asarray(K, dtype=float).reshape(3, 3)
        return cls(float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2]), int(width), int(height))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Intrinsics":
        return cls(float(d["fx"]), float(d["fy"]), float(d["cx"]), float(d["cy"]),
                   int(d["width"]), int(d["height"]))


def validate_pose(pose, tol: float = 1e-3) -> np.ndarray:
    """Return ``pose`` as a float64 4x4 array, or raise :class:`PoseError`.

    Rejects NaN/Inf, a wrong shape, a bottom row other than [0 0 0 1], and a
    rotation block that is not orthonormal with determinant +1 within ``tol``
    (scaled, sheared or mirrored transforms).
    """
    T = np.asarray(pose, dtype=np.float64)
    if T.shape != (4, 4):
        raise PoseError(f"pose must be 4x4, got shape {T.shape}")
    if not np.all(np.isfinite(T)):
        raise PoseError("pose contains NaN or Inf")
    if np.max(np.abs(T[3] - [0.0, 0.0, 0.0, 1.0])) > tol:
        raise PoseError(f"pose bottom row must be [0 0 0 1], got {T[3].tolist()}")
    R = T[:3, :3]
    ortho_err = float(np.max(np.abs(R.T @ R - np.eye(3))))
    if ortho_err > tol:
        raise PoseError(f"pose rotation is not orthonormal (max |R^T R - I| = {ortho_err:.3g})")
    det = float(np.linalg.det(R))
    if abs(det - 1.0) > tol:
        raise PoseError(f"pose rotation has determinant {det:.4f}, expected +1 (mirrored?)")
    return T


def pose_from_position_quaternion(position, quaternion_xyzw) -> np.ndarray:
    """4x4 transform from a translation and a quaternion (x, y, z, w), as in
    geometry_msgs/Pose.  Raises :class:`PoseError` for a non-finite input or a
    quaternion far from unit length (|q| outside [0.9, 1.1]); a nearly unit one
    is normalised."""

    p = np.asarray(position, dtype=np.float64).reshape(3)
    q = np.asarray(quaternion_xyzw, dtype=np.float64).reshape(4)
    if not (np.all(np.isfinite(p)) and np.all(np.isfinite(q))):
        raise PoseError("pose position or orientation contains NaN or Inf")
    n = float(np.linalg.norm(q))
    if not 0.9 <= n <= 1.1:
        raise PoseError(f"orientation quaternion has norm {n:.4f}; expected a unit quaternion")
    T = np.eye(4)
    T[:3, :3] = Rotation.from_quat(q / n).as_matrix()
    T[:3, 3] = p
    return T


def position_quaternion_from_pose(pose) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`pose_from_position_quaternion`: (xyz, quaternion xyzw)."""

    T = np.asarray(pose, dtype=np.float64)
    return T[:3, 3].copy(), Rotation.from_matrix(T[:3, :3]).as_quat()


def optical_from_body_pose(T_world_body) -> np.ndarray:
    """Camera-to-world pose of the optical frame, given the pose of a REP-103
    body-axes camera frame (x forward, y left, z up) at the same origin."""
    T = np.array(T_world_body, dtype=np.float64)
    out = T.copy()
    out[:3, :3] = T[:3, :3] @ BODY_FROM_OPTICAL
    return out


def body_from_optical_pose(T_world_optical) -> np.ndarray:
    """Inverse of :func:`optical_from_body_pose`."""
    T = np.array(T_world_optical, dtype=np.float64)
    out = T.copy()
    out[:3, :3] = T[:3, :3] @ BODY_FROM_OPTICAL.T
    return out


def rotation_angle_deg(R_a, R_b) -> float:
    """Angle in degrees of the relative rotation between two 3x3 rotations."""
    R = np.asarray(R_a).T @ np.asarray(R_b)
    c = (np.trace(R) - 1.0) / 2.0
    return float(np.degrees(np.arccos(np.clip(c, -1.0, 1.0))))


def project_points(points_world, pose_c2w, intrinsics: Intrinsics) -> tuple[np.ndarray, np.ndarray]:
    """Project world points (N, 3) into a camera; returns pixel coords (N, 2)
    as (u, v) and the camera-frame depth z (N,)."""
    T = np.linalg.inv(np.asarray(pose_c2w, dtype=np.float64))
    P = np.asarray(points_world, dtype=np.float64)
    pc = P @ T[:3, :3].T + T[:3, 3]
    z = pc[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = intrinsics.fx * pc[:, 0] / z + intrinsics.cx
        v = intrinsics.fy * pc[:, 1] / z + intrinsics.cy
    return np.stack([u, v], axis=1), z


# --------------------------------------------------------------------------- torch


def depth_points_world(depth, intrinsics: Intrinsics, pose_c2w, stride: int = 1, near: float = 0.0,
                       far: float = np.inf, return_mask: bool = False):
    """World points (N, 3, metres) of a z-depth image (H, W metres; 0, NaN or outside
    ``[near, far]`` = no reading), every ``stride``-th pixel in each direction.  With
    ``return_mask``: also the pixels that gave a point, as a mask over
    ``depth[::stride, ::stride]`` (points in its row-major order)."""
    h, w = intrinsics.shape
    vs, us = np.mgrid[0:h:stride, 0:w:stride]
    z = np.asarray(depth, np.float64)[vs, us]
    ok = np.isfinite(z) & (z > 0) & (z >= near) & (z <= far)
    pc = np.stack([(us[ok] - intrinsics.cx) / intrinsics.fx * z[ok], (vs[ok] - intrinsics.cy) / intrinsics.fy * z[ok],
                   z[ok]], -1)
    T = np.asarray(pose_c2w, np.float64)
    points = pc @ T[:3, :3].T + T[:3, 3]
    return (points, ok) if return_mask else points


def points_seen_by_views(points, poses, intrinsics, depths, tol: float = 0.03, min_depth: float = 0.05,
                         max_depth: float = np.inf) -> np.ndarray:
    """True for the points (N, 3, world metres) that at least one view saw: in front of the
    camera (z in ``(min_depth, max_depth)``), projecting inside the image, and -- for a view
    with a depth image (H, W metres, 0 or NaN = none) -- within ``tol`` m of that view's depth
    at the nearest pixel; a view whose depth is None counts what is inside its frustum.
    ``poses``: camera-to-world (optical axes); ``intrinsics``: one :class:`Intrinsics` or one
    per view.  NumPy in and out; the rule itself is :func:`points_seen_by_views_torch`'s, run
    on the CPU view by view (views may differ in size)."""
    x = torch.from_numpy(np.asarray(points, np.float64).reshape(-1, 3))
    seen = torch.zeros(x.shape[0], dtype=torch.bool)
    many = isinstance(intrinsics, (list, tuple))
    for i, (T, D) in enumerate(zip(poses, depths)):
        K = intrinsics[i] if many else intrinsics
        h, w = int(K.height), int(K.width)
        if D is not None:
            D = np.asarray(D, np.float64)
            if D.shape != (h, w):
                raise ValueError(f"view {i}: depth is {D.shape[1]}x{D.shape[0]} but the intrinsics are for "
                                 f"{K.width}x{K.height}")
        depth = torch.zeros(1, h, w, dtype=torch.float64) if D is None else torch.from_numpy(D)[None]
        seen |= points_seen_by_views_torch(x, torch.as_tensor(np.asarray(T, np.float64))[None],
                                           torch.tensor([[K.fx, K.fy, K.cx, K.cy]], dtype=torch.float64), depth,
                                           torch.tensor([D is not None]), tol, min_depth, max_depth)
    return seen.numpy()


def points_seen_by_views_torch(points: torch.Tensor, poses: torch.Tensor, intrinsics: torch.Tensor,
                               depths: torch.Tensor, has_depth: torch.Tensor, tol: float = 0.03,
                               min_depth: float = 0.05, max_depth: float = float("inf")) -> torch.Tensor:
    """:func:`points_seen_by_views`'s rule on tensors, where they are (the mapper's keyframe buffer
    on a GPU): ``points`` (N, 3) world metres, ``poses`` (V, 4, 4) camera-to-world, ``intrinsics``
    (V, 4) ``fx, fy, cx, cy`` of images of ``depths``' (V, H, W) size in metres, ``has_depth`` (V,)
    bool (False: the view counts its frustum).  Computed in float64, so the pixel a point falls on
    does not depend on the device; returns (N,) bool."""
    dev = points.device
    p = points.to(torch.float64).reshape(-1, 3)
    seen = torch.zeros(p.shape[0], dtype=torch.bool, device=dev)
    V, h, w = depths.shape
    T = poses.to(device=dev, dtype=torch.float64)
    K = intrinsics.to(device=dev, dtype=torch.float64)
    D = depths.to(dev)
    has = has_depth.to(dev)
    for i in range(V):
        q = (p - T[i, :3, 3]) @ T[i, :3, :3]  # world -> camera (optical)
        z = q[:, 2]
        front = (z > min_depth) & (z < max_depth)
        zs = torch.where(front, z, torch.ones_like(z))
        u = torch.round(q[:, 0] / zs * K[i, 0] + K[i, 2])
        v = torch.round(q[:, 1] / zs * K[i, 1] + K[i, 3])
        inside = front & (u >= 0) & (u < w) & (v >= 0) & (v < h)
        ui = u.clamp(0, w - 1).long()
        vi = v.clamp(0, h - 1).long()
        d = D[i][vi, ui].to(torch.float64)
        hit = torch.isfinite(d) & (d > 0) & ((d - z).abs() < tol)
        seen |= inside & (hit | ~has[i])
    return seen


def pixel_directions(intrinsics: Intrinsics, device=None, dtype=None):
    """Camera-frame ray directions (H, W, 3) through pixel centres, z = 1."""

    h, w = intrinsics.shape
    v, u = torch.meshgrid(
        torch.arange(h, device=device, dtype=torch.float32),
        torch.arange(w, device=device, dtype=torch.float32),
        indexing="ij",
    )
    d = torch.stack([(u - intrinsics.cx) / intrinsics.fx, (v - intrinsics.cy) / intrinsics.fy,
                     torch.ones_like(u)], dim=-1)
    return d if dtype is None else d.to(dtype)


def camera_rays(pose_c2w, intrinsics: Intrinsics, device=None):
    """World-frame rays through every pixel of a camera.

    Returns ``(origins, directions)``, each (H*W, 3) float32, row-major pixel
    order; directions have camera z = 1 (``t`` equals z-depth).
    """

    T = torch.as_tensor(np.asarray(pose_c2w, dtype=np.float32), device=device)
    d_cam = pixel_directions(intrinsics, device=device).reshape(-1, 3)
    dirs = d_cam @ T[:3, :3].T
    origins = T[:3, 3].expand_as(dirs).contiguous()
    return origins, dirs


def rays_from_pixels(pose_c2w, intrinsics: Intrinsics, u, v):
    """World-frame rays for pixel coordinates ``u, v`` (tensors of the same
    shape, float pixel coordinates) of one camera; ``pose_c2w`` is a (4, 4)
    tensor or a batch (N, 4, 4) matching ``u``.  Directions have camera z = 1."""

    d_cam = torch.stack([(u - intrinsics.cx) / intrinsics.fx, (v - intrinsics.cy) / intrinsics.fy,
                         torch.ones_like(u)], dim=-1)
    T = torch.as_tensor(pose_c2w, device=u.device, dtype=torch.float32)
    if T.dim() == 2:
        return T[:3, 3].expand_as(d_cam), d_cam @ T[:3, :3].T
    dirs = torch.einsum("nij,nj->ni", T[:, :3, :3], d_cam)
    return T[:, :3, 3], dirs
