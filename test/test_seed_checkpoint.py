"""Importing the seed's checkpoints (issue 18, gap 7).

The checkpoint is written here from the seed's saving layout as its README and trainer describe it:
``torch.save`` of a dict with ``global_step``, ``network_coarse_state_dict``,
``network_fine_state_dict`` and ``optimizer_state_dict``, where each network is the paper's MLP
with the seed's module names -- a ``pts_linears`` list (the encoded position in, ``W`` wide, the
encoded position concatenated again into the layer after index 4), ``views_linears`` (one layer on
``[feature, encoded direction]`` to ``W/2``), ``feature_linear``, ``alpha_linear``,
``semantic_linear`` (a block of Linear+ReLU to ``W/2``, then a Linear to the valid classes) and
``rgb_linear`` -- and the optimiser is Adam over the coarse then the fine parameters.  The positional
encoding divides positions by 10 and concatenates ``[x, sin(2^k x), cos(2^k x)]`` per frequency.  A
numpy forward of that description is the reference the imported map must reproduce."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from semnerf_ros.cli import import_seed as import_cli
from semnerf_ros.cli import mesh as mesh_cli
from semnerf_ros.engine.geometry import Intrinsics
from semnerf_ros.engine.mapper import Mapper
from semnerf_ros.engine.mesh import read_mesh, seed_density_threshold
from semnerf_ros.engine.seed_checkpoint import SeedCheckpointError, import_seed_checkpoint, seed_architecture

D, W, MULTIRES, MULTIRES_VIEWS, N_VALID = 3, 32, 4, 2, 5
BOUNDS = np.array([[-2.0, -2.0, -2.0], [2.0, 2.0, 2.0]])


class SeedLayoutMLP(nn.Module):
    """The paper's MLP with the seed's module names and registration order (its state-dict layout)."""

    def __init__(self, depth=D, width=W, in_ch=3 + 6 * MULTIRES, in_views=3 + 6 * MULTIRES_VIEWS, n_sem=N_VALID,
                 skip=4):
        super().__init__()
        self.pts_linears = nn.ModuleList([nn.Linear(in_ch, width)] + [
            nn.Linear(width + (in_ch if i == skip else 0), width) for i in range(depth - 1)])
        self.views_linears = nn.ModuleList([nn.Linear(in_views + width, width // 2)])
        self.feature_linear = nn.Linear(width, width)
        self.alpha_linear = nn.Linear(width, 1)
        if n_sem:
            self.semantic_linear = nn.Sequential(nn.Sequential(nn.Linear(width, width // 2), nn.ReLU()),
                                                 nn.Linear(width // 2, n_sem))
        self.rgb_linear = nn.Linear(width // 2, 3)


def encode(x: np.ndarray, freqs: int, scale: float) -> np.ndarray:
    x = x / scale
    parts = [x]
    for k in range(freqs):
        parts += [np.sin(2.0 ** k * x), np.cos(2.0 ** k * x)]
    return np.concatenate(parts, -1)


def reference_forward(state: dict, pts: np.ndarray, dirs: np.ndarray, skip=4):
    """The documented architecture in numpy: (sigma before relu, rgb logits, semantic logits)."""
    W_ = {k: v.detach().double().numpy() for k, v in state.items()}

    def lin(name, h):
        return h @ W_[f"{name}.weight"].T + W_[f"{name}.bias"]

    x = encode(pts, MULTIRES, 10.0)
    h = x
    n_layers = len({k.split(".")[1] for k in W_ if k.startswith("pts_linears.")})
    for i in range(n_layers):
        h = np.maximum(lin(f"pts_linears.{i}", h), 0)
        if i == skip:
            h = np.concatenate([x, h], -1)
    alpha = lin("alpha_linear", h)[:, 0]
    sem = lin("semantic_linear.1", np.maximum(lin("semantic_linear.0.0", h), 0))
    feat = lin("feature_linear", h)
    hv = np.maximum(lin("views_linears.0", np.concatenate([feat, encode(dirs, MULTIRES_VIEWS, 1.0)], -1)), 0)
    return alpha, lin("rgb_linear", hv), sem


def write_seed_checkpoint(path, global_step=200000, alpha_shift=0.0, n_sem=N_VALID, seed=0) -> dict:
    torch.manual_seed(seed)
    coarse, fine = SeedLayoutMLP(n_sem=n_sem), SeedLayoutMLP(n_sem=n_sem)
    with torch.no_grad():
        for net in (coarse, fine):
            net.alpha_linear.bias += alpha_shift
    opt = torch.optim.Adam(list(coarse.parameters()) + list(fine.parameters()), lr=5e-4)
    loss = sum(p.square().sum() for p in opt.param_groups[0]["params"])
    loss.backward()
    opt.step()
    ckpt = {"global_step": global_step, "network_coarse_state_dict": coarse.state_dict(),
            "network_fine_state_dict": fine.state_dict(), "optimizer_state_dict": opt.state_dict()}
    torch.save(ckpt, path)
    return ckpt


def test_the_imported_map_computes_the_seeds_mlps(tmp_path):
    ckpt = write_seed_checkpoint(tmp_path / "200000.ckpt")
    assert seed_architecture(ckpt["network_fine_state_dict"]) == {
        "netdepth": D, "netwidth": W, "multires": MULTIRES, "multires_views": MULTIRES_VIEWS,
        "num_valid_classes": N_VALID}
    names = ["void"] + [f"c{i}" for i in range(1, N_VALID + 1)]
    m = import_seed_checkpoint(tmp_path / "200000.ckpt", {"experiment": {"device": "cpu"}}, names, BOUNDS)
    assert m.num_classes == N_VALID + 1 and m.class_names == names and m.step_count == 200001
    assert (m.cfg["model"]["netdepth"], m.cfg["model"]["netwidth"], m.cfg["render"]["multires"]) == (D, W, MULTIRES)
    rng = np.random.default_rng(0)
    pts = rng.uniform(-2, 2, (64, 3))
    dirs = rng.normal(size=(64, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    for ours, key in ((m.model.coarse, "network_coarse_state_dict"), (m.model.fine, "network_fine_state_dict")):
        out = ours(torch.tensor(pts, dtype=torch.float32), torch.tensor(dirs, dtype=torch.float32))
        alpha, rgb, sem = reference_forward(ckpt[key], pts, dirs)
        np.testing.assert_allclose(out["sigma_raw"].detach().numpy(), alpha, atol=1e-4)
        np.testing.assert_allclose(out["rgb_raw"].detach().numpy(), rgb, atol=1e-4)
        np.testing.assert_allclose(out["semantic"].detach().numpy(), sem, atol=1e-4)
    # Adam's moments follow the parameters they belong to
    seed_state = ckpt["optimizer_state_dict"]["state"]
    n_coarse = len(ckpt["network_coarse_state_dict"])
    seed_idx = n_coarse + list(ckpt["network_fine_state_dict"]).index("semantic_linear.1.weight")
    ours = dict(m.model.named_parameters())["fine.semantic_linear.2.weight"]
    np.testing.assert_allclose(m.trainer.optimizer.state[ours]["exp_avg"].numpy(),
                               seed_state[seed_idx]["exp_avg"].numpy())
    # it renders, saves as a map file, and loads back the same
    view = m.render(np.eye(4), Intrinsics.from_hfov(8, 6, 90.0))
    assert view.rgb.shape == (6, 8, 3) and view.labels.min() >= 1
    path = m.save(tmp_path / "map.pt")
    back = Mapper.load(path, device="cpu")
    np.testing.assert_allclose(back.render(np.eye(4), Intrinsics.from_hfov(8, 6, 90.0)).rgb, view.rgb, atol=1e-6)
    m.step()   # no keyframes: nothing to train on, but nothing breaks


def test_bad_checkpoints_are_refused_naming_the_problem(tmp_path):
    torch.save({"model": {}}, tmp_path / "other.ckpt")
    with pytest.raises(SeedCheckpointError, match="not a Semantic-NeRF checkpoint"):
        import_seed_checkpoint(tmp_path / "other.ckpt", bounds=BOUNDS)
    with pytest.raises(SeedCheckpointError, match="not found"):
        import_seed_checkpoint(tmp_path / "none.ckpt", bounds=BOUNDS)
    write_seed_checkpoint(tmp_path / "a.ckpt")
    with pytest.raises(SeedCheckpointError, match="class names"):
        import_seed_checkpoint(tmp_path / "a.ckpt", class_names=["void", "x"], bounds=BOUNDS)
    with pytest.raises(SeedCheckpointError, match="bounds"):
        import_seed_checkpoint(tmp_path / "a.ckpt")
    write_seed_checkpoint(tmp_path / "plain.ckpt", n_sem=0)
    with pytest.raises(SeedCheckpointError, match="enable_semantic"):
        import_seed_checkpoint(tmp_path / "plain.ckpt", bounds=BOUNDS)
    state = {"output_linear.weight": torch.zeros(5, 32), "pts_linears.0.weight": torch.zeros(32, 27)}
    torch.save({"global_step": 0, "network_coarse_state_dict": state, "network_fine_state_dict": state},
               tmp_path / "noview.ckpt")
    with pytest.raises(SeedCheckpointError, match="use_viewdirs"):
        import_seed_checkpoint(tmp_path / "noview.ckpt", bounds=BOUNDS)


def _crossing_shift(tmp_path) -> float:
    """An alpha bias shift that makes the random MLP's density cross the seed's iso-level in BOUNDS."""
    ckpt = write_seed_checkpoint(tmp_path / "probe.ckpt")
    g = np.stack(np.meshgrid(*[np.linspace(-2, 2, 12)] * 3, indexing="ij"), -1).reshape(-1, 3)
    alpha, _, _ = reference_forward(ckpt["network_fine_state_dict"], g, np.tile([[0, 0, 1.0]], (len(g), 1)))
    return float(seed_density_threshold((0.1, 10.0), 8) - np.median(alpha))   # N_importance 8 below


def test_semnerf_mesh_meshes_a_seed_checkpoint_as_the_seed(tmp_path, capsys):
    save = tmp_path / "run"
    (save / "checkpoints").mkdir(parents=True)
    write_seed_checkpoint(save / "checkpoints" / "200000.ckpt", alpha_shift=_crossing_shift(tmp_path))
    cfg = tmp_path / "seed.yaml"
    cfg.write_text(f"model: {{netdepth: {D}, netwidth: {W}, netdepth_fine: {D}, netwidth_fine: {W}}}\n"
                   f"render: {{multires: {MULTIRES}, multires_views: {MULTIRES_VIEWS}, N_samples: 8, "
                   f"N_importance: 8}}\nexperiment: {{device: cpu}}\n")
    rc = mesh_cli.main(["--save_dir", str(save), "--config_file", str(cfg), "--bounds", "-2", "-2", "-2", "2", "2",
                        "2", "--grid_dim", "12", "--sem", "--no-progress", "--device", "cpu", "--clean", "0"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "imported the seed checkpoint" in captured.err and "protocol seed" in captured.out
    out = save / "mesh_reconstruction" / "use_vertex_normal" / "semantic_mesh_canonical_dim12neart_2.0.ply"
    mesh = read_mesh(out)
    assert mesh.num_faces > 0 and mesh.vertex_labels.min() >= 1
    canonical = read_mesh(save / "mesh_reconstruction" / "mesh_canonical.ply")
    assert canonical.num_faces >= mesh.num_faces


def test_the_import_tool_writes_a_map_the_node_can_load(tmp_path, capsys):
    write_seed_checkpoint(tmp_path / "20000.ckpt", global_step=20000)
    cfg = tmp_path / "seed.yaml"
    cfg.write_text(f"model: {{netdepth: {D}, netwidth: {W}, netdepth_fine: {D}, netwidth_fine: {W}}}\n"
                   f"render: {{multires: {MULTIRES}, multires_views: {MULTIRES_VIEWS}}}\n")
    assert import_cli.main([str(tmp_path / "20000.ckpt"), "-o", str(tmp_path / "m.pt"), "--config_file", str(cfg),
                            "--bounds", "-2", "-2", "-2", "2", "2", "2"]) == 0
    assert "step 20001" in capsys.readouterr().out
    m = Mapper.load(tmp_path / "m.pt", device="cpu")
    assert m.step_count == 20001 and m.num_classes == N_VALID + 1
    assert import_cli.main([str(tmp_path / "20000.ckpt"), "-o", str(tmp_path / "x.pt")]) == 2
    assert "--training_data_dir" in capsys.readouterr().err
