"""The training step, the snapshot view renderer and the semantic branch, on the CPU.

What makes the step capturable in a CUDA graph is checked where it can be without a GPU:
the fixed-layout marcher and compositing match the packed / cumulative-product ones, the
losses stay tensors, and the trainer steps eagerly on a CPU.  The semantic grid's defence
against label noise is checked by its gradients: the semantic loss reaches neither the
density nor the shared features.
"""
import numpy as np
import pytest
import torch

from semnerf_ros.engine.config import make_config
from semnerf_ros.engine.keyframes import RayBatch
from semnerf_ros.engine.models import build_model
from semnerf_ros.engine.occupancy import march_rays, march_rays_dense
from semnerf_ros.engine.render import (
    alpha_from_density,
    weights_from_alpha,
    weights_from_density,
    weights_from_density_by_matmul,
)
from semnerf_ros.engine.trainer import Trainer, wants_cuda_graph
from semnerf_ros.engine.view_renderer import ViewRenderer

BOX = [[-1.5, -1.5, -1.0], [1.5, 1.5, 1.0]]


def cfg(**hash_opts):
    h = {"n_levels": 4, "log2_hashmap_size": 12, "base_resolution": 4, "finest_resolution": 32,
         "hidden_dim": 16, "hidden_dim_color": 16, "hidden_dim_semantic": 16, "backend": "torch"}
    h.update(hash_opts.pop("hash", {}))
    train = hash_opts.pop("train", {})
    return make_config({"model": {"type": "hash", "hash": h}, "experiment": {"device": "cpu", "seed": 0},
                        "render": {"N_rays": 64, "march_steps": 48, "max_samples_per_ray": 12,
                                   "occupancy_resolution": 16, "depth_range": [0.05, 4.0]},
                        "train": train})


def rays(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    d = torch.randn(n, 3, generator=g)
    d[:, 2] = d[:, 2].abs() + 0.3
    return torch.zeros(n, 3), d / d[:, 2:]


def opaque(model, bias=3.0):
    """A field with a dense blob in front of the rays, so that rays saturate (``bias``: the density
    layer's, log 1/m)."""
    with torch.no_grad():   # its own generator: the same field whatever ran before in the process
        model.field.encoding.table.normal_(0.0, 2.0, generator=torch.Generator().manual_seed(0))
        model.field.density_net[-1].bias[0] = bias
    model.before_step(0)


def test_dense_and_packed_marching_agree():
    m = build_model(cfg(), 5, np.array(BOX))
    opaque(m)
    o, d = rays(300)
    n, f = torch.full((300,), 0.05), torch.full((300,), 4.0)
    dense = march_rays_dense(o, d, n, f, m.grid, 48, 12, None)
    packed = march_rays(o, d, n, f, m.grid, 48, 12, perturb=False)
    ray, slot = dense["valid"].nonzero(as_tuple=True)
    assert torch.equal(ray, packed["ray"]) and torch.equal(slot, packed["slot"])
    assert torch.equal(dense["t"][ray, slot], packed["t"])
    assert not dense["delta"][~dense["valid"]].any()          # no interval where no sample is
    # kept samples come first on each ray, front to back
    v = dense["valid"].int()
    assert (v[:, 1:] <= v[:, :-1]).all()
    t = torch.where(dense["valid"], dense["t"], torch.inf)
    assert (t[:, 1:] >= t[:, :-1]).all()


def test_view_weights_by_matmul_equal_the_scan_and_survive_infinite_density():
    """The views' compositing weights (a product with a triangular matrix for the optical depth in
    front of each sample) equal the training renderer's scan, opaque samples included."""
    g = torch.Generator().manual_seed(5)
    sigma = torch.rand(64, 48, generator=g) * 30
    delta = torch.rand(64, 48, generator=g) * 0.05
    torch.testing.assert_close(weights_from_density_by_matmul(sigma, delta), weights_from_density(sigma, delta),
                               atol=1e-6, rtol=1e-5)
    sigma[:, 7] = torch.inf
    w = weights_from_density_by_matmul(sigma, delta)
    assert torch.isfinite(w).all() and (w[:, 8:] == 0).all()
    torch.testing.assert_close(w, weights_from_density(sigma, delta), atol=1e-6, rtol=1e-5)


def test_log_space_weights_equal_cumulative_product_and_survive_infinite_density():
    g = torch.Generator().manual_seed(1)
    sigma = torch.rand(50, 20, generator=g) * 20
    delta = torch.rand(50, 20, generator=g) * 0.1
    a = weights_from_alpha(alpha_from_density(sigma, delta))
    b = weights_from_density(sigma, delta)
    torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    sigma[:, 3] = torch.inf                                  # an opaque sample: nothing behind it counts
    w = weights_from_density(sigma, delta)
    assert torch.isfinite(w).all() and (w[:, 4:] == 0).all()
    assert torch.allclose(w.sum(-1), torch.ones(50), atol=1e-6)


@pytest.mark.parametrize("surface_fraction,branch", [(0.0, "grid"), (0.5, "grid"), (0.5, "shared")])
def test_training_and_inference_renderers_agree(surface_fraction, branch):
    """The inference renderer (front-to-back blocks of slots, early termination, heads on the
    visible samples) and the fixed-layout renderer that training uses give the same colour, depth
    and class scores, with samples spread evenly or crowded at the grid's first surface, and with
    the semantic head on a grid of its own or on the density grid's features; and it skips
    samples behind the surfaces."""
    c = cfg(hash={"semantic_branch": branch})
    c["render"]["surface_sample_fraction"] = surface_fraction
    m = build_model(c, 5, np.array(BOX))
    assert m.surface_spread_steps == 3  # 3 m / 16 cells against (4 - 0.05) m / 48 steps, rounded up
    opaque(m, bias=4.0)   # opaque enough that about half the rays close (transmittance < 1e-4) early
    m.eval()
    m.SLOT_BLOCKS = (3, 6)  # blocks scaled to this test's 12 samples a ray (views: 8 and 16 of 48)
    o, d = rays(400, seed=2)
    n, f = torch.full((400,), 0.05), torch.full((400,), 4.0)
    with torch.no_grad():
        a = m._render_inference(o, d, n, f)
        b = m.render_dense(o, d, n, f)
    assert float(b["acc"].min()) > 0.99                       # the rays do saturate: termination matters
    assert a["evaluated_per_ray"] < 0.75 * float(b["samples_per_ray"])   # ... and saves density evaluations
    for k, tol in (("rgb", 1e-3), ("depth", 1e-3), ("acc", 1e-3)):
        torch.testing.assert_close(a[k], b[k], atol=tol, rtol=0)
    pa, pb = torch.softmax(a["semantic"], -1), torch.softmax(b["semantic"], -1)
    torch.testing.assert_close(pa, pb, atol=2e-3, rtol=0)


def batch(n=64, seed=3, depth=True):
    o, d = rays(n, seed)
    g = torch.Generator().manual_seed(seed)
    return RayBatch(o, d, torch.rand(n, 3, generator=g), torch.randint(0, 5, (n,), generator=g),
                    torch.full((n,), 1.0) if depth else None)


def test_trainer_steps_eagerly_on_the_cpu_and_keeps_losses_on_the_device():
    c = cfg()
    assert not wants_cuda_graph(c, torch.device("cpu"))
    assert wants_cuda_graph(c, torch.device("cuda")) and not wants_cuda_graph(
        make_config({"train": {"cuda_graph": False}, "model": {"type": "hash"}}), torch.device("cuda"))
    m = build_model(c, 5, np.array(BOX))
    m.before_step(0)
    tr = Trainer(m, c, torch.device("cpu"))
    assert not tr.use_graph
    before = [p.detach().clone() for p in m.parameters()]
    out = tr.step(batch(), 1e-2, torch.Generator().manual_seed(0))
    assert all(isinstance(v, torch.Tensor) for v in out.values())
    assert {"loss", "loss_rgb", "loss_semantic", "loss_depth", "psnr", "samples_per_ray"} <= set(out)
    assert any(not torch.equal(a, b) for a, b in zip(before, m.parameters()))
    # the optimiser state written to a map file has plain-float learning rates
    assert all(isinstance(g["lr"], float) for g in tr.state_dict()["param_groups"])


@pytest.mark.parametrize("branch,geometry_grad,reaches_geometry", [
    ("grid", False, False), ("shared", False, False), ("grid", True, True), ("shared", True, True)])
def test_semantic_loss_reaches_geometry_only_when_allowed(branch, geometry_grad, reaches_geometry):
    """The default (a semantic grid, no semantic gradient into geometry) cannot bend density or the
    shared features to fit a pixel's label: the semantic loss alone gives them zero gradient."""
    c = cfg(hash={"semantic_branch": branch, "semantic_grid_cell": 0.5},
            train={"semantic_geometry_grad": geometry_grad})
    m = build_model(c, 5, np.array(BOX))
    opaque(m)
    m.train()
    b = batch(256, seed=4)
    out = m.render_rays(b.origins, b.dirs, torch.full((256,), 0.05), torch.full((256,), 4.0), training=True,
                        jitter=torch.rand(256, 2))
    from semnerf_ros.engine.models import semantic_loss

    semantic_loss(out["semantic"], b.labels).backward()
    geometry = list(m.field.density_net.parameters()) + [m.field.encoding.table]
    moved = any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in geometry)
    assert moved == reaches_geometry
    sem = list(m.field.semantic_net.parameters())
    if branch == "grid":
        sem.append(m.field.semantic_encoding.table)
    assert all(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in sem)


def test_semantic_grid_is_sized_in_metres():
    for box, cell in ((BOX, 0.5), ([[-5, -5, -5], [5, 5, 5]], 0.08)):
        m = build_model(cfg(hash={"semantic_branch": "grid", "semantic_grid_cell": cell}), 5, np.array(box))
        side = float(np.max(np.subtract(box[1], box[0])))
        want = max(17, round(side / cell))  # the level progression floors: the finest may be one cell less
        assert m.field.semantic_encoding.resolutions[-1] in (want - 1, want)


def test_view_renderer_follows_the_live_model():
    c = cfg()
    live = build_model(c, 5, np.array(BOX))
    opaque(live)
    view = ViewRenderer(torch.device("cpu"))
    o, d = rays(200, seed=5)

    def both():
        with view.lock:
            view.refresh(live)
            got = view.render(o, d, 0.05, 4.0, 64)
        live.eval()
        ref = live.render_chunked(o, d, 0.05, 4.0, 64)
        return got, ref

    got, ref = both()
    for k in ("rgb", "depth", "acc", "semantic"):
        torch.testing.assert_close(got[k], ref[k])
    with torch.no_grad():                                   # training moves the weights ...
        live.field.color_net[-1].bias += 0.5
    got2, ref2 = both()                                     # ... and the next view shows it
    torch.testing.assert_close(got2["rgb"], ref2["rgb"])
    assert not torch.allclose(got2["rgb"], got["rgb"])
    other = build_model(c, 5, np.array(BOX))                # a reset or loaded map: a new model object
    other.before_step(0)
    with view.lock:
        view.refresh(other)
        got3 = view.render(o, d, 0.05, 4.0, 64)
    other.eval()
    torch.testing.assert_close(got3["rgb"], other.render_chunked(o, d, 0.05, 4.0, 64)["rgb"])


def test_views_may_keep_fewer_samples_than_training():
    """render.view_max_samples: the inference renderer and the dense view path both keep that many
    samples per ray, and still agree; training keeps max_samples_per_ray."""
    c = cfg()
    c["render"]["view_max_samples"] = 6
    m = build_model(c, 5, np.array(BOX))
    opaque(m)
    m.eval()
    assert m.view_samples == 6 and build_model(cfg(), 5, np.array(BOX)).view_samples == \
        int(cfg()["render"]["max_samples_per_ray"])
    o, d = rays(300, seed=4)
    n, f = torch.full((300,), 0.05), torch.full((300,), 4.0)
    with torch.no_grad():
        a = m._render_inference(o, d, n, f)
        b = m.render_dense(o, d, n, f, max_samples=m.view_samples)
        full = m.render_dense(o, d, n, f)
    assert float(a["samples_per_ray"]) <= 6 and float(b["samples_per_ray"]) <= 6
    assert float(full["samples_per_ray"]) > 6
    torch.testing.assert_close(a["depth"], b["depth"], atol=1e-3, rtol=0)
    with pytest.raises(ValueError, match="view_max_samples"):
        make_config({"render": {"view_max_samples": -1}})


def test_view_heads_on_the_heaviest_samples_only():
    """render.view_head_samples: a view's colour and class scores from each ray's heaviest samples
    (the weight left out given their weighted mean) differ from every sample's by at most the weight
    left out times the values' spread; depth and opacity are the full pass's.  Training keeps every
    sample."""
    c = cfg()
    c["render"]["view_head_samples"] = 4
    m = build_model(c, 5, np.array(BOX))
    opaque(m)
    m.eval()
    o, d = rays(300, seed=5)
    n, f = torch.full((300,), 0.05), torch.full((300,), 4.0)
    K = m.view_samples
    with torch.no_grad():
        top = m.render_dense(o, d, n, f, max_samples=K)
        m.view_head_samples = 0
        full = m.render_dense(o, d, n, f, max_samples=K)
        mk = march_rays_dense(o, d, n, f, m.grid, 48, K, None, m.surface_fraction, m.surface_spread_steps)
        pts = (o[:, None] + mk["t"][..., None] * d[:, None]).reshape(-1, 3)
        sigma = torch.where(mk["valid"], m.field.density(pts).reshape(300, K), 0.0)
        w = weights_from_density(sigma, mk["delta"])
        largest_logit = m.field.semantic_logits(pts).abs().reshape(300, -1).amax(-1)
    left_out = w.sort(-1, descending=True).values[:, 4:].sum(-1)
    assert float(left_out.max()) > 1e-3          # some rays do lose weight: the test can tell the paths apart
    torch.testing.assert_close(top["depth"], full["depth"])
    torch.testing.assert_close(top["acc"], full["acc"])
    assert ((top["rgb"] - full["rgb"]).abs().amax(-1) <= left_out + 1e-5).all()   # colours lie in [0, 1]
    assert ((top["semantic"] - full["semantic"]).abs().amax(-1) <= 2 * left_out * largest_logit + 1e-5).all()
    assert not torch.allclose(top["semantic"], full["semantic"])
    with torch.enable_grad():                     # training: every sample reaches the heads
        m.view_head_samples = 4
        g = m.render_dense(o, d, n, f, max_samples=K)
    torch.testing.assert_close(g["rgb"].detach(), full["rgb"])
    with pytest.raises(ValueError, match="view_head_samples"):
        make_config({"render": {"view_head_samples": -2}})
