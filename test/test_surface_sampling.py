"""Samples placed at the occupancy grid's first surface (render.surface_sample_fraction), on the CPU.

The marcher keeps ``max_samples`` of a ray's occupied steps.  With a surface share, part of them
follow the compositing weights of the grid's own densities; the rest stay spread over every
occupied step, so space behind a surface is still sampled.  Checked on a hand-made grid: a box
of faint density with one dense slab that rays along +x cross.
"""
import math

import pytest
import torch

from semnerf_ros.engine.config import ConfigError, make_config
from semnerf_ros.engine.occupancy import OccupancyGrid, march_rays, march_rays_dense, surface_sample_mass

STEPS, K = 200, 24
SLAB = (2.0, 2.25)  # metres along x, density 50 / m


def slab_grid():
    grid = OccupancyGrid([[0.0, 0.0, 0.0], [4.0, 4.0, 4.0]], resolution=16)
    centres = (torch.arange(16) + 0.5) * 0.25
    x = centres[:, None, None].expand(16, 16, 16).reshape(-1)
    grid.density.fill_(0.01)
    grid.density[(x > SLAB[0]) & (x < SLAB[1])] = 50.0
    return grid


def x_rays(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    o = torch.cat([torch.full((n, 1), 0.01), 0.3 + 3.4 * torch.rand(n, 2, generator=g)], 1)
    d = torch.tensor([[1.0, 0.0, 0.0]]).expand(n, 3)
    return o, d, torch.full((n,), 0.1), torch.full((n,), 3.9)


SPREAD = 14  # steps of 1.9 cm across a 25 cm cell, rounded up


def march(fraction, jitter=None, max_samples=K, spread=SPREAD):
    o, d, n, f = x_rays()
    return march_rays_dense(o, d, n, f, slab_grid(), STEPS, max_samples, jitter, surface_fraction=fraction,
                            surface_spread_steps=spread)


def test_mass_is_even_without_a_surface_share_and_never_above_one_sample_a_step():
    occ = torch.ones(3, 100, dtype=torch.bool)
    occ[1, 50:] = False
    n_occ = occ.sum(-1)
    tau = torch.zeros(3, 100)
    tau[:, 40] = 5.0
    even = surface_sample_mass(occ, n_occ, tau, 10, 0.0)
    assert torch.allclose(even[0], torch.full((100,), 0.01))
    guided = surface_sample_mass(occ, n_occ, tau, 10, 0.8)
    assert (guided <= 0.1 + 1e-6).all()                       # at most one of the 10 samples a step
    assert torch.allclose(guided.sum(-1), torch.ones(3), atol=1e-5)
    assert guided[0, 40] == pytest.approx(0.1)                # the surface step takes its whole sample
    assert (guided[1, 50:] == 0).all()                        # empty steps get nothing
    spread = surface_sample_mass(occ, n_occ, tau, 10, 0.8, spread_steps=5)
    assert torch.allclose(spread[0, 40:45], torch.full((5,), 0.1))  # a cell's width behind its face
    assert spread[0, 39] < 0.05 and spread[0, 45] < 0.05


def test_a_tiny_surface_share_keeps_the_even_spread():
    old, new = march(0.0), march(1e-7)
    assert torch.equal(old["valid"], new["valid"]) and torch.equal(old["t"], new["t"])
    # the even path gives every sample the same interval; the new one the steps to the next sample
    assert torch.allclose(old["delta"].sum(-1), new["delta"].sum(-1), rtol=0.05)


def test_samples_crowd_the_first_surface_and_still_reach_behind_it():
    even, guided = march(0.0), march(0.5)
    for m in (even, guided):
        v = m["valid"].int()
        assert (v[:, 1:] <= v[:, :-1]).all()                  # kept samples first
        t = torch.where(m["valid"], m["t"], torch.inf)
        assert (t[:, 1:] > t[:, :-1])[m["valid"][:, 1:]].all()  # front to back, no step twice
        assert not m["delta"][~m["valid"]].any()

    def in_slab(m):
        x = m["t"] + 0.01  # rays start at x = 0.01 and run along +x
        return (m["valid"] & (x > SLAB[0]) & (x < SLAB[1])).sum(-1).float()

    def behind(m):
        return (m["valid"] & (m["t"] + 0.01 > SLAB[1] + 0.25)).sum(-1).float()

    step = (3.9 - 0.1) / STEPS
    slab_steps = (SLAB[1] - SLAB[0]) / step
    assert in_slab(even).mean() < 3.0
    assert in_slab(guided).mean() >= math.floor(slab_steps) - 1   # every step of the slab sampled
    assert behind(guided).mean() >= 0.3 * behind(even).mean()    # behind it: still sampled
    # the kept samples tile the occupied steps: intervals add up to the whole occupied length
    assert torch.allclose(guided["delta"].sum(-1), torch.full((64,), STEPS * step), rtol=1e-4)


def test_few_occupied_steps_are_all_kept_and_packed_marching_agrees():
    m = march(0.5, max_samples=STEPS)
    assert (m["valid"].sum(-1) == STEPS).all()
    assert torch.allclose(m["delta"][m["valid"]], torch.tensor((3.9 - 0.1) / STEPS))
    o, d, n, f = x_rays()
    packed = march_rays(o, d, n, f, slab_grid(), STEPS, K, perturb=False, surface_fraction=0.5,
                        surface_spread_steps=SPREAD)
    dense = march(0.5)
    ray, slot = dense["valid"].nonzero(as_tuple=True)
    assert torch.equal(ray, packed["ray"]) and torch.equal(dense["t"][ray, slot], packed["t"])
    assert torch.equal(dense["delta"][ray, slot], packed["delta"])


def test_jittered_marching_keeps_the_budget():
    jitter = torch.rand(64, 2, generator=torch.Generator().manual_seed(3))
    m = march(0.5, jitter=jitter)
    assert (m["valid"].sum(-1) <= K).all() and (m["valid"].sum(-1) >= K - 2).all()


def test_the_share_is_a_fraction():
    with pytest.raises(ConfigError, match="surface_sample_fraction"):
        make_config({"render": {"surface_sample_fraction": 1.5}})
