"""Intensity metrics over the overlap (torch): values, invariances, gradients."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip('torch')

from napari_coreg.engines.torch.metrics import (  # noqa: E402
    gauss_newton_system,
    loss,
    mutual_information,
    natural,
    ncc,
)
from napari_coreg.options import Metric  # noqa: E402


@pytest.fixture
def values() -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return 0.05 + 0.9 * torch.rand(1, 4000, generator=generator, dtype=torch.float64)


def _ones(x: torch.Tensor) -> torch.Tensor:
    return torch.ones_like(x)


def test_ncc_of_identical_is_one(values) -> None:
    assert ncc(values, values, _ones(values)).item() == pytest.approx(1.0, abs=1e-12)


def test_ncc_is_invariant_to_gain_and_offset_and_flips_sign(values) -> None:
    w = _ones(values)
    assert ncc(3 * values + 2, values, w).item() == pytest.approx(1.0, abs=1e-12)
    assert ncc(-values, values, w).item() == pytest.approx(-1.0, abs=1e-12)


def test_ncc_counts_only_the_overlap(values) -> None:
    w = _ones(values)
    w[:, 2000:] = 0
    other = values.clone()
    other[:, 2000:] = torch.rand(1, 2000, dtype=torch.float64)  # outside: ignored
    assert ncc(other, values, w).item() == pytest.approx(1.0, abs=1e-12)


def test_ncc_batch_broadcasts_one_fixed(values) -> None:
    moving = torch.cat([values, 1 - values, values**2])
    out = ncc(moving, values, _ones(moving))
    assert out.shape == (3,)
    assert out[0] == pytest.approx(1.0) and out[1] == pytest.approx(-1.0)
    assert 0.9 < out[2] < 1.0


def test_mutual_information_of_identical_beats_independent_noise(values) -> None:
    generator = torch.Generator().manual_seed(1)
    noise = torch.rand(1, values.shape[1], generator=generator, dtype=torch.float64)
    w = _ones(values)
    same = mutual_information(values, values, w).item()
    independent = mutual_information(noise, values, w).item()
    assert same > 1.5  # about the (smoothed) entropy of 32 bins, log(32) = 3.47
    assert abs(independent) < 0.1
    assert same > 10 * max(independent, 1e-3)


def test_mutual_information_sees_a_non_monotonic_remap(values) -> None:
    """MI is (nearly) as high for a cosine remap as for the image itself; NCC is not."""
    w = _ones(values)
    remapped = 0.5 + 0.5 * torch.cos(2 * np.pi * values)  # symmetric: uncorrelated
    same = mutual_information(values, values, w).item()
    assert mutual_information(remapped, values, w).item() > 0.6 * same
    assert abs(ncc(remapped, values, w).item()) < 0.2


def test_mutual_information_counts_only_the_overlap(values) -> None:
    w = _ones(values)
    w[:, 3000:] = 0
    scrambled = values.clone()
    scrambled[:, 3000:] = scrambled[:, 3000:].flip(-1)
    a = mutual_information(scrambled, values, w)
    b = mutual_information(values[:, :3000], values[:, :3000], _ones(values[:, :3000]))
    torch.testing.assert_close(a, b)


def test_gradients_flow_through_mutual_information(values) -> None:
    small = values[:, :200].clone()
    generator = torch.Generator().manual_seed(2)
    moving = small + 0.05 * torch.rand(
        small.shape, generator=generator, dtype=torch.float64
    )
    moving = moving.clamp(0.02, 0.98).requires_grad_(True)
    w = _ones(small)
    value = mutual_information(moving, small, w, bins=8)
    (grad,) = torch.autograd.grad(value.sum(), moving)
    assert torch.isfinite(grad).all() and grad.abs().max() > 0
    assert torch.autograd.gradcheck(
        lambda m: mutual_information(m, small, w, bins=8),
        (moving,),
        eps=1e-6,
        atol=1e-6,
    )


@pytest.mark.parametrize('metric', list(Metric))
def test_loss_is_lower_for_the_match(values, metric) -> None:
    w = _ones(values)
    shuffled = values[
        :, torch.randperm(values.shape[1], generator=torch.Generator().manual_seed(3))
    ]
    assert loss(metric, values, values, w) < loss(metric, shuffled, values, w)


def test_natural_forms(values) -> None:
    w = _ones(values)
    other = values + 0.1
    assert natural(Metric.L1, other, values, w).item() == pytest.approx(0.1)
    assert natural(Metric.MSE, other, values, w).item() == pytest.approx(0.01)
    assert loss(Metric.NCC, other, values, w).item() == pytest.approx(0.0, abs=1e-12)
    assert loss(Metric.MI, values, values, w).item() == pytest.approx(
        -natural(Metric.MI, values, values, w).item()
    )


def test_l1_and_mse_average_over_the_overlap_only(values) -> None:
    w = _ones(values)
    w[:, 1000:] = 0
    other = values.clone()
    other[:, :1000] += 0.2
    other[:, 1000:] += 5.0  # outside the overlap
    assert natural(Metric.L1, other, values, w).item() == pytest.approx(0.2)
    assert natural(Metric.MSE, other, values, w).item() == pytest.approx(0.04)


def _linear_model(values: torch.Tensor, n_params: int = 3):
    generator = torch.Generator().manual_seed(4)
    jac = torch.randn(
        1, values.shape[1], n_params, generator=generator, dtype=torch.float64
    )
    target = torch.tensor([0.02, -0.01, 0.03], dtype=torch.float64)[:n_params]
    fixed = values
    base = (
        values - (jac @ target[:, None])[..., 0]
    )  # m(p) = base + J p equals fixed at p = target
    return fixed, base, jac, target


def test_gauss_newton_step_solves_a_linear_mse_problem_exactly(values) -> None:
    fixed, base, jac, target = _linear_model(values)
    w = _ones(values)
    value, hessian, gradient = gauss_newton_system(Metric.MSE, base, fixed, w, jac)
    step = -torch.linalg.solve(hessian, gradient[..., None])[..., 0]
    torch.testing.assert_close(step[0], target, rtol=1e-8, atol=1e-10)
    assert value.item() == pytest.approx(natural(Metric.MSE, base, fixed, w).item())


@pytest.mark.parametrize('metric', [Metric.MSE, Metric.NCC])
def test_gauss_newton_gradient_matches_autograd(values, metric) -> None:
    """``g`` is the gradient of the least-squares objective the step minimises:
    half the MSE gradient (0.5 * sum r^2 convention), exactly 1 - NCC's."""
    fixed, base, jac, _ = _linear_model(values)
    w = _ones(values)
    params = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    moving = base + (jac @ params[:, None])[..., 0]
    value = loss(metric, moving, fixed, w)
    (expected,) = torch.autograd.grad(value.sum(), params)
    got_value, _, gradient = gauss_newton_system(metric, base, fixed, w, jac)
    scale = 0.5 if metric is Metric.MSE else 1.0
    torch.testing.assert_close(gradient[0], scale * expected, rtol=1e-7, atol=1e-12)
    torch.testing.assert_close(got_value, value.detach(), rtol=1e-9, atol=1e-12)


def test_gauss_newton_refuses_mutual_information(values) -> None:
    w = _ones(values)
    jac = torch.zeros(1, values.shape[1], 2, dtype=torch.float64)
    with pytest.raises(ValueError):
        gauss_newton_system(Metric.MI, values, values, w, jac)


def test_mutual_information_analytic_gradient_matches_autograd(values) -> None:
    """The hand-written MI derivative (used by the optimisers) is the true one."""
    from napari_coreg.engines.torch.metrics import mutual_information_and_gradient

    generator = torch.Generator().manual_seed(5)
    fixed = values[:, :3000]
    moving = (
        0.5
        + 0.5 * torch.cos(1.5 * np.pi * fixed)
        + 0.05 * torch.randn(fixed.shape, generator=generator, dtype=torch.float64)
    )
    moving = moving.clamp(0.01, 0.99)
    w = _ones(fixed)
    w[:, :100] = 0  # outside the overlap: zero derivative
    for bins in (8, 32):
        value, gradient = mutual_information_and_gradient(moving, fixed, w, bins)
        leaf = moving.clone().requires_grad_(True)
        expected_value = mutual_information(leaf, fixed, w, bins)
        (expected,) = torch.autograd.grad(expected_value.sum(), leaf)
        torch.testing.assert_close(value, expected_value.detach())
        torch.testing.assert_close(gradient, expected, rtol=1e-6, atol=1e-10)
        assert gradient[:, :100].abs().max() == 0


def test_mutual_information_gradient_matches_finite_differences(values) -> None:
    from napari_coreg.engines.torch.metrics import mutual_information_and_gradient

    fixed = values[:, :500]
    moving = (fixed**2).clamp(0.01, 0.99)
    w = _ones(fixed)
    _, gradient = mutual_information_and_gradient(moving, fixed, w, 16)
    eps = 1e-6
    for i in (0, 7, 123, 499):
        up, down = moving.clone(), moving.clone()
        up[0, i] += eps
        down[0, i] -= eps
        numeric = (
            mutual_information(up, fixed, w, 16)
            - mutual_information(down, fixed, w, 16)
        ) / (2 * eps)
        assert gradient[0, i].item() == pytest.approx(
            numeric.item(), rel=1e-4, abs=1e-9
        )


@pytest.mark.parametrize('metric', list(Metric))
def test_loss_and_gradient_is_consistent(values, metric) -> None:
    from napari_coreg.engines.torch.metrics import loss_and_gradient

    fixed = values[:, :2000]
    moving = (fixed**1.3 + 0.02).clamp(0.01, 0.99)
    w = _ones(fixed)
    w[:, -50:] = 0
    value, gradient = loss_and_gradient(metric, moving, fixed, w, 16)
    torch.testing.assert_close(value, loss(metric, moving, fixed, w, 16))
    eps = 1e-6
    for i in (3, 1000):
        up, down = moving.clone(), moving.clone()
        up[0, i] += eps
        down[0, i] -= eps
        numeric = (
            loss(metric, up, fixed, w, 16) - loss(metric, down, fixed, w, 16)
        ) / (2 * eps)
        assert gradient[0, i].item() == pytest.approx(
            numeric.item(), rel=1e-4, abs=1e-10
        )
    assert gradient[:, -50:].abs().max() == 0
