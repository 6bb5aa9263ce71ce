"""Shared fixtures: schedules, a deterministic dummy denoiser, float64 defaults for the maths tests."""

from __future__ import annotations

import pytest
import torch

from ddpm_lessons import schedules

# One intra-op thread per test process: pytest-xdist already runs one process per core, and on a loaded machine
# small ops on several threads ran 10-100x slower (oversubscription). Also keeps float results independent of the
# machine's core count.
torch.set_num_threads(1)


class AffineEps(torch.nn.Module):
    """A deterministic stand-in denoiser: ε̂ = a·x_t + b·sin(t/100), elementwise; no training needed.

    Used where a test needs *some* fixed model (sampler against oracle, batch vs one-by-one), not a good one.
    """

    objective = "eps"
    learn_sigma = False
    num_classes = 0
    null_label = None

    def __init__(self, a: float = 0.3, b: float = 0.1):
        super().__init__()
        self.a = torch.nn.Parameter(torch.tensor(a))
        self.b = b

    def forward(self, xt: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        shape = (-1,) + (1,) * (xt.dim() - 1)
        return self.a * xt + self.b * torch.sin(t.to(xt.dtype) / 100).reshape(shape)


class GaussianOracle(torch.nn.Module):
    """The exact E[ε | x_t] for data x_0 ~ N(m, s²) per dimension: √(1-ᾱ)(x_t - √ᾱ m)/(ᾱ s² + 1 - ᾱ).

    The Bayes-optimal ε-predictor for Gaussian data, so bounds and samplers driven by it have closed forms.
    """

    objective, learn_sigma, num_classes, null_label = "eps", False, 0, None

    def __init__(self, sched, m: float, s: float):
        super().__init__()
        self.sched, self.m, self.s = sched, m, s

    def forward(self, xt, t, cond=None):
        ab = self.sched.alpha_bar[t.cpu()].to(xt.dtype).to(xt.device).reshape(-1, *([1] * (xt.dim() - 1)))
        return (1 - ab).sqrt() * (xt - ab.sqrt() * self.m) / (ab * self.s ** 2 + 1 - ab)


SCHEDULES = {
    "linear": lambda: schedules.linear(1000),
    "cosine": lambda: schedules.cosine(1000),
    "linear50": lambda: schedules.linear(50, 1e-3, 0.2),
}


@pytest.fixture(params=sorted(SCHEDULES))
def sched(request):
    return SCHEDULES[request.param]()


@pytest.fixture
def dummy_model():
    return AffineEps()
