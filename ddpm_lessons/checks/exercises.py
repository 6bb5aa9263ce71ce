"""The code exercises: signature, worked solution, seeded test cases, the package's reference, and a reference with
knobs for the classic bugs (the grader generates one mutated reference per combination of at most two knobs).

Each exercise is a learner's function with a fixed positional signature. Its test cases are chosen so each classic
bug shows (see ``_BATCHED`` / ``_STEPS`` below): several schedules (the DDPM linear one, a T = 50 cosine one, a T = 8
schedule with large non-monotone β, a respaced 20-step chain), batch shapes (B, D) and (B, C, H, W) with B different
from every trailing axis (so broadcasting a (B,) coefficient fails instead of silently aligning with the last axis),
t = 1, t = T and steps in between (α vs ᾱ is invisible at t = 1, where ᾱ_1 = α_1), float32 and float64, η = 0.5
(η inside or outside the square root is invisible at η = 0 and η = 1), strided steps t_prev < t - 1 (the DDIM t - 1
bug), σ_t² = β_t in the ancestral step (noise added at t = 1 is invisible with β̃_1 = 0), w = 0 and w > 0 in CFG.

References:
    [DDPM] Ho, Jain, Abbeel 2020, arXiv:2006.11239 (Eq. 4, 6-7, 11, 14; Algorithms 1 and 2)
    [DDIM] Song, Meng, Ermon 2020, arXiv:2010.02502 (Eq. 12, 16)
    [CFG]  Ho, Salimans 2022, arXiv:2207.12598 (Eq. 6, Algorithm 2)
    [DSM]  Vincent 2011, Neural Computation 23(7) (denoising score matching); notebook 05 Eq. 4
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .. import forward, losses, samplers, schedules

__all__ = ["Factor", "Case", "Exercise", "EXERCISES", "ToyEps"]


# ------------------------------------------------------------------------------------------------------------------
# Spec types
# ------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Factor:
    """One knob of the mutated reference: ``levels[0]`` is the correct choice, the others are classic bugs.

    ``phrases[level]`` names the bug in a sentence fragment ("α_t in place of ᾱ_t in the ε coefficient");
    ``outputs`` lists the outputs the knob changes (empty: all of them).
    """

    name: str
    levels: tuple[Any, ...]
    phrases: dict[Any, str]
    outputs: tuple[str, ...] = ()


@dataclass(frozen=True)
class Case:
    """One seeded input: ``args`` are passed positionally to the learner's function (tensors and modules are
    copied per call); ``label`` describes it for feedback; ``t_rows`` (B,) are the per-row time steps, if any."""

    label: str
    args: tuple[Any, ...]
    dtype: torch.dtype
    tags: frozenset[str]
    t_rows: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Exercise:
    """A code exercise. ``reference(case)`` is the package's answer (a tuple, one tensor per output);
    ``mutant(case, knobs)`` the answer with the given knob levels (float64); ``kind`` is "tensor" or "loss"."""

    id: str
    title: str
    func_name: str
    cite: str
    outputs: tuple[str, ...]
    subject: str  # "the ancestral step": used in "your x_{t-1} matches the ancestral step with ..."
    make_cases: Callable[[], list[Case]]
    reference: Callable[[Case], tuple[torch.Tensor, ...]]
    mutant: Callable[[Case, dict[str, Any]], tuple[torch.Tensor, ...]]
    factors: tuple[Factor, ...]
    stub: str
    solution: str
    prompt: str
    kind: str = "tensor"
    broadcast_ok: frozenset[str] = frozenset()  # outputs that may be returned broadcastable to x's shape
    single_pass: bool = False  # the model must be called once per call (batched CFG)
    notebook: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------------------------
# A deterministic stand-in for a network
# ------------------------------------------------------------------------------------------------------------------
class ToyEps(nn.Module):
    """ε_θ(x_t, t[, c]) (or s_θ) for grading: smooth and nonlinear in x_t, t and the label, with two scalar
    parameters so a loss carries gradients. Follows the package's model protocol (``objective``, ``learn_sigma``,
    ``num_classes``, ``null_label``) and counts its calls. Checks its inputs and says what is wrong."""

    def __init__(self, T: int, num_classes: int = 0) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.tensor(0.8, dtype=torch.float64))
        self.b = nn.Parameter(torch.tensor(0.3, dtype=torch.float64))
        self.T = T
        self.objective, self.learn_sigma = "eps", False
        self.num_classes, self.null_label = num_classes, num_classes
        self.register_buffer("emb", torch.linspace(-1.0, 1.0, num_classes + 1, dtype=torch.float64) ** 3)
        self.calls = 0

    def forward(self, xt: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        if not torch.is_tensor(xt) or xt.dim() < 2:
            raise ValueError(f"the model takes x_t as a tensor (B, ...), got {type(xt).__name__} "
                             f"{tuple(xt.shape) if torch.is_tensor(xt) else ''}")
        if not torch.is_tensor(t) or t.is_floating_point():
            raise ValueError("the model takes t as a LongTensor (B,) of integer time steps 1..T, got "
                             + (f"a {t.dtype} tensor" if torch.is_tensor(t) else type(t).__name__))
        if t.shape != (xt.shape[0],):
            raise ValueError(f"the model got t of shape {tuple(t.shape)} for x_t of shape {tuple(xt.shape)}; "
                             f"t must have shape ({xt.shape[0]},)")
        if cond is not None and (not torch.is_tensor(cond) or cond.shape != (xt.shape[0],)):
            raise ValueError(f"the model got cond of shape {tuple(getattr(cond, 'shape', ()))} for x_t of shape "
                             f"{tuple(xt.shape)}; cond must be a LongTensor of shape ({xt.shape[0]},)")
        self.calls += 1
        view = (-1, *[1] * (xt.dim() - 1))
        tt = (t.to(torch.float64) / self.T).view(view).to(xt.dtype)
        a, b = self.a.to(xt.dtype), self.b.to(xt.dtype)
        out = torch.tanh(a * xt + b * torch.cos(7.0 * tt)) + 0.4 * torch.sin(3.0 * tt + 0.5)
        if cond is not None:
            out = out + self.emb.to(xt.dtype)[cond.long()].view(view) * (1.0 + xt ** 2).sqrt()
        return out


# ------------------------------------------------------------------------------------------------------------------
# Cases
# ------------------------------------------------------------------------------------------------------------------
def _schedules() -> dict[str, schedules.Schedule]:
    lin = schedules.linear(1000)
    return {
        "linear(T=1000)": lin,
        "cosine(T=50)": schedules.cosine(50),
        # large, non-monotone β: α_t and ᾱ_t, β_t and β̃_t differ by tens of percent at every t > 1
        "T=8, large beta": schedules.from_beta(torch.tensor([0.3, 0.05, 0.2, 0.4, 0.1, 0.25, 0.15, 0.35]),
                                               name="T=8, large beta"),
        "linear(T=1000) respaced to 20 steps": schedules.respace(lin, 20),
    }


# (schedule, shape, dtype, t per row): B (the first axis) differs from every trailing axis
_BATCHED = [
    ("linear(T=1000)", (5, 3), torch.float64, (1, 1000, 2, 500, 731)),
    ("linear(T=1000)", (6, 2, 3, 4), torch.float32, (1, 1000, 17, 250, 600, 999)),
    ("T=8, large beta", (7, 2), torch.float64, (1, 8, 2, 3, 4, 5, 6)),
    ("cosine(T=50)", (5, 1, 2, 3), torch.float64, (50, 1, 25, 49, 2)),
    ("T=8, large beta", (4, 3), torch.float32, (1, 1, 1, 1)),
    ("cosine(T=50)", (3, 2, 4, 5), torch.float32, (50, 50, 50)),
]

# (schedule, shape, dtype, t, t_prev, eta) for the one-step samplers (one integer step for the whole batch)
_STEPS = [
    ("linear(T=1000)", (5, 3), torch.float64, 1000, 980, 0.5),
    ("linear(T=1000)", (6, 2, 3, 4), torch.float32, 500, 499, 0.0),
    ("linear(T=1000)", (5, 3), torch.float64, 1, 0, 0.5),
    ("linear(T=1000)", (5, 3), torch.float64, 2, 1, 1.0),
    ("linear(T=1000)", (4, 3), torch.float32, 20, 0, 0.3),
    ("T=8, large beta", (7, 2), torch.float64, 8, 5, 0.5),
    ("T=8, large beta", (6, 1, 2, 3), torch.float64, 4, 3, 0.5),
    ("T=8, large beta", (7, 2), torch.float64, 1, 0, 1.0),
    ("T=8, large beta", (3, 2, 4, 5), torch.float32, 2, 1, 0.7),
    ("cosine(T=50)", (5, 1, 2, 3), torch.float64, 50, 40, 0.5),
    ("cosine(T=50)", (5, 3), torch.float64, 30, 29, 1.0),
    ("linear(T=1000) respaced to 20 steps", (5, 3), torch.float64, 20, 19, 0.5),
    ("linear(T=1000) respaced to 20 steps", (6, 2, 3, 4), torch.float32, 7, 3, 0.5),
]


def _shape_text(shape: tuple[int, ...]) -> str:
    axes = "(B, D)" if len(shape) == 2 else "(B, C, H, W)"
    return f"{axes} = {shape}"


def _dt(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def _gen(i: int, salt: int) -> torch.Generator:
    return torch.Generator().manual_seed(1000 * salt + i)


def _randn(shape: tuple[int, ...], g: torch.Generator, dtype: torch.dtype) -> torch.Tensor:
    return torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)


def _batched_cases(salt: int, order: tuple[str, ...], classes: int = 0) -> list[Case]:
    """Cases for the exercises with a per-row t; ``order`` names the arguments: "sched", "model" (a fresh
    :class:`ToyEps`), "t" (B,) and any number of tensor names (each a fresh N(0, 1) draw of the case's shape)."""
    S = _schedules()
    out = []
    for i, (name, shape, dtype, ts) in enumerate(_BATCHED):
        g = _gen(i, salt)
        sched = S[name]
        args: list[Any] = []
        for arg in order:
            if arg == "sched":
                args.append(sched)
            elif arg == "model":
                args.append(ToyEps(sched.T, classes))
            elif arg == "t":
                args.append(torch.tensor(ts, dtype=torch.long))
            else:
                args.append(_randn(shape, g, dtype))
        tags = {_dt(dtype), "image" if len(shape) == 4 else "flat"}
        out.append(Case(f"{name}, x {_shape_text(shape)} {_dt(dtype)}, t = {list(ts)}", tuple(args), dtype,
                        frozenset(tags), ts))
    return out


def _bshape(x: torch.Tensor) -> tuple[int, ...]:
    return (-1, *[1] * (x.dim() - 1))


def _tab(sched: schedules.Schedule, name: str, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Float64 schedule values at t (B,), reshaped to broadcast against ``like`` (B, ...). Index 0 exists (the
    identity step), so a t - 1 bug at t = 1 reads ᾱ_0 = 1 (and produces the same 0/0 as the learner's code)."""
    return getattr(sched, name)[t].view(_bshape(like))


def _f64(*xs: torch.Tensor) -> list[torch.Tensor]:
    return [x.detach().to(torch.float64) for x in xs]


# ------------------------------------------------------------------------------------------------------------------
# 1. q_sample  ([DDPM] Eq. 4)
# ------------------------------------------------------------------------------------------------------------------
_XT_FACTORS = (
    Factor("table", ("alpha_bar", "alpha"), {"alpha": "α_t in place of ᾱ_t"}),
    Factor("shift", (0, -1), {-1: "ᾱ_{t-1} in place of ᾱ_t (the t - 1 index)"}),
    Factor("sqrt_x0", (True, False), {False: "no square root on the x_0 coefficient (ᾱ_t, not √ᾱ_t)"}),
    Factor("sqrt_eps", (True, False), {False: "no square root on the noise coefficient (1 - ᾱ_t is the variance; "
                                              "the standard deviation is √(1 - ᾱ_t))"}),
    Factor("swap", (False, True), {True: "the two coefficients swapped (√(1 - ᾱ_t) on x_0, √ᾱ_t on ε)"}),
)


def _xt_mutant(sched: schedules.Schedule, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor,
               k: dict[str, Any]) -> torch.Tensor:
    a = _tab(sched, k.get("table", "alpha_bar"), t + k.get("shift", 0), x0)
    c0 = a.sqrt() if k.get("sqrt_x0", True) else a
    c1 = (1 - a).sqrt() if k.get("sqrt_eps", True) else (1 - a)
    if k.get("swap", False):
        c0, c1 = c1, c0
    return c0 * x0 + c1 * noise  # [DDPM] Eq. 4 with the knobs


Q_SAMPLE_SOLUTION = '''\
def my_q_sample(sched, x0, t, noise):
    """Draw x_t ~ q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I) ([DDPM] Eq. 4).

    sched: a ddpm_lessons Schedule (float64 tensors of length T + 1; sched.alpha_bar[t] is alpha_bar_t).
    x0, noise: tensors (B, ...), noise ~ N(0, I). t: LongTensor (B,) of time steps in 1..T.
    Returns x_t, with x0's shape and dtype.
    """
    ab = sched.alpha_bar.to(x0)[t].view(-1, *[1] * (x0.dim() - 1))  # (B, 1, ..., 1)
    return ab.sqrt() * x0 + (1 - ab).sqrt() * noise
'''

# ------------------------------------------------------------------------------------------------------------------
# 2. posterior mean and variance  ([DDPM] Eq. 6-7)
# ------------------------------------------------------------------------------------------------------------------
_POST_FACTORS = (
    Factor("shift", (0, -1), {-1: "every index one step early (t - 1 in place of t)"}),
    Factor("x0_ab", ("prev", "cur"), {"cur": "√ᾱ_t in place of √ᾱ_{t-1} in the x_0 coefficient"}, ("mean",)),
    Factor("x0_sqrt", (True, False), {False: "no square root on ᾱ_{t-1} in the x_0 coefficient"}, ("mean",)),
    Factor("xt_a", ("alpha", "alpha_bar"), {"alpha_bar": "√ᾱ_t in place of √α_t in the x_t coefficient"}, ("mean",)),
    Factor("xt_sqrt", (True, False), {False: "no square root on α_t in the x_t coefficient"}, ("mean",)),
    Factor("xt_num", ("1-abp", "1-ab"), {"1-ab": "(1 - ᾱ_t) in place of (1 - ᾱ_{t-1}) in the x_t coefficient"},
           ("mean",)),
    Factor("swap", (False, True), {True: "the x_0 and x_t coefficients swapped"}, ("mean",)),
    Factor("var", ("beta_tilde", "beta", "inverted", "std", "one_m_ab"),
           {"beta": "β_t in place of β̃_t (that is the other fixed choice of σ_t², not the posterior's variance)",
            "inverted": "the ratio upside down: (1 - ᾱ_t)/(1 - ᾱ_{t-1}) β_t in place of (1 - ᾱ_{t-1})/(1 - ᾱ_t) β_t",
            "std": "the standard deviation √β̃_t in place of the variance β̃_t",
            "one_m_ab": "1 - ᾱ_t (the variance of q(x_t | x_0)) in place of β̃_t"}, ("var",)),
)


def _post_mutant(case: Case, k: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    sched, x0, xt, t = case.args
    x0, xt = _f64(x0, xt)
    ts = t + k.get("shift", 0)
    ab, abp = _tab(sched, "alpha_bar", ts, x0), _tab(sched, "alpha_bar_prev", ts, x0)
    alpha, beta = _tab(sched, "alpha", ts, x0), _tab(sched, "beta", ts, x0)
    a0 = abp if k.get("x0_ab", "prev") == "prev" else ab
    c0 = (a0.sqrt() if k.get("x0_sqrt", True) else a0) * beta / (1 - ab)
    a1 = alpha if k.get("xt_a", "alpha") == "alpha" else ab
    num = (1 - abp) if k.get("xt_num", "1-abp") == "1-abp" else (1 - ab)
    c1 = (a1.sqrt() if k.get("xt_sqrt", True) else a1) * num / (1 - ab)
    if k.get("swap", False):
        c0, c1 = c1, c0
    mean = c0 * x0 + c1 * xt  # [DDPM] Eq. 7 with the knobs
    bt = (1 - abp) / (1 - ab) * beta  # [DDPM] Eq. 7
    var = {"beta_tilde": bt, "beta": beta, "inverted": (1 - ab) / (1 - abp) * beta, "std": bt.sqrt(),
           "one_m_ab": 1 - ab}[k.get("var", "beta_tilde")]
    return mean, var.expand_as(x0)


POSTERIOR_SOLUTION = '''\
def my_q_posterior(sched, x0, xt, t):
    """Mean and variance of q(x_{t-1} | x_t, x_0) = N(mu_tilde_t, beta_tilde_t I) ([DDPM] Eq. 6-7).

    x0, xt: tensors (B, ...). t: LongTensor (B,) in 1..T.
    Returns (mean, var): mean (B, ...); var (B, 1, ..., 1) or (B, ...); both in x0's dtype.
    """
    shape = (-1, *[1] * (x0.dim() - 1))  # (B, 1, ..., 1)
    ab, abp = sched.alpha_bar[t].view(shape), sched.alpha_bar_prev[t].view(shape)
    alpha, beta = sched.alpha[t].view(shape), sched.beta[t].view(shape)
    mean = abp.sqrt() * beta / (1 - ab) * x0 + alpha.sqrt() * (1 - abp) / (1 - ab) * xt
    var = (1 - abp) / (1 - ab) * beta
    return mean.to(x0.dtype), var.to(x0.dtype)
'''

# ------------------------------------------------------------------------------------------------------------------
# 3. L_simple training step  ([DDPM] Algorithm 1, Eq. 14)
# ------------------------------------------------------------------------------------------------------------------
_LOSS_FACTORS = (
    *_XT_FACTORS[:4],
    Factor("model_input", ("xt", "x0"), {"x0": "the model called on x_0 instead of the noised x_t"}),
    Factor("model_t", (0, -1), {-1: "the model called at t - 1 instead of t"}),
    Factor("target", ("noise", "x0", "xt"), {"x0": "x_0 as the regression target (this exercise predicts ε)",
                                             "xt": "x_t as the regression target (the target is the noise ε)"}),
    Factor("power", (2, 1), {1: "an absolute error |ε - ε_θ| in place of the squared error"}),
    Factor("reduction", ("mean", "sum_dims", "sum"),
           {"sum_dims": "a sum over the data dimensions (the paper's ‖·‖²) where this exercise, like the "
                        "reference code, takes the mean over dimensions as well as over the batch",
            "sum": "a sum over the batch and dimensions in place of the mean"}),
)


def _loss_mutant(case: Case, k: dict[str, Any]) -> tuple[torch.Tensor]:
    model, sched, x0, t, noise = case.args
    x0, noise = _f64(x0, noise)
    xt = _xt_mutant(sched, x0, t, noise, k)
    inp = xt if k.get("model_input", "xt") == "xt" else x0
    with torch.no_grad():
        eps_hat = model(inp, t + k.get("model_t", 0))
    target = {"noise": noise, "x0": x0, "xt": xt}[k.get("target", "noise")]
    err = (target - eps_hat).abs() ** k.get("power", 2)
    red = k.get("reduction", "mean")
    out = err.mean() if red == "mean" else err.flatten(1).sum(1).mean() if red == "sum_dims" else err.sum()
    return (out,)


TRAINING_LOSS_SOLUTION = '''\
def my_training_loss(model, sched, x0, t, noise):
    """L_simple for one batch ([DDPM] Algorithm 1, lines 2-5; Eq. 14).

    x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) noise; loss = mean over batch and dimensions of
    (noise - model(x_t, t))^2.
    model(xt, t) -> eps_hat (B, ...). x0, noise: (B, ...). t: LongTensor (B,) in 1..T.
    Returns a 0-d tensor that carries gradients to the model's parameters.
    """
    ab = sched.alpha_bar.to(x0)[t].view(-1, *[1] * (x0.dim() - 1))  # (B, 1, ..., 1)
    xt = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
    return ((noise - model(xt, t)) ** 2).mean()
'''

# ------------------------------------------------------------------------------------------------------------------
# 4. the ancestral step  ([DDPM] Algorithm 2, Eq. 11), σ_t² = β_t
# ------------------------------------------------------------------------------------------------------------------
_DDPM_FACTORS = (
    Factor("shift", (0, -1), {-1: "every coefficient read at t - 1 instead of t"}),
    Factor("eps_ab", ("alpha_bar", "alpha"), {"alpha": "α_t in place of ᾱ_t in the ε coefficient "
                                                       "(β_t/√(1 - α_t) instead of β_t/√(1 - ᾱ_t))"}),
    Factor("eps_sqrt", (True, False), {False: "no square root in the ε coefficient (β_t/(1 - ᾱ_t), not "
                                              "β_t/√(1 - ᾱ_t))"}),
    Factor("outer", ("alpha", "alpha_bar"), {"alpha_bar": "1/√ᾱ_t in place of 1/√α_t in front of the bracket"}),
    Factor("outer_sqrt", (True, False), {False: "no square root on α_t in front of the bracket"}),
    Factor("eps_sign", (-1, 1), {1: "ε̂ added instead of subtracted"}),
    Factor("sigma", ("sqrt_beta", "beta", "sqrt_beta_tilde", "none"),
           {"beta": "β_t in place of σ_t = √β_t as the noise scale (the variance used as a standard deviation)",
            "sqrt_beta_tilde": "σ_t² = β̃_t where this exercise asks for σ_t² = β_t",
            "none": "no noise added (Algorithm 2 adds σ_t z for t > 1)"}),
    Factor("noise_t1", (False, True), {True: "noise added at t = 1 too (Algorithm 2, line 3: z = 0 if t = 1)"}),
)


def _steps_cases(salt: int, with_prev: bool) -> list[Case]:
    S = _schedules()
    out = []
    for i, (name, shape, dtype, t, t_prev, eta) in enumerate(_STEPS):
        sched = S[name]
        if not with_prev and name.endswith("respaced to 20 steps"):
            continue
        g = _gen(i, salt)
        xt, eps_hat, noise = (_randn(shape, g, dtype) for _ in range(3))
        tags = {_dt(dtype), "image" if len(shape) == 4 else "flat", "t=1" if t == 1 else "t>1"}
        if with_prev:
            if t_prev < t - 1:
                tags.add("strided")
            out.append(Case(f"{name}, x {_shape_text(shape)} {_dt(dtype)}, t = {t}, t_prev = {t_prev}, eta = {eta}",
                            (sched, xt, t, t_prev, eps_hat, eta, noise), dtype, frozenset(tags)))
        else:
            out.append(Case(f"{name}, x {_shape_text(shape)} {_dt(dtype)}, t = {t}",
                            (sched, xt, t, eps_hat, noise), dtype, frozenset(tags)))
    # the step at t = T and t = 2 of the T = 8 and T = 50 chains as well (one integer t for the whole batch)
    if not with_prev:
        for j, (name, shape, dtype, t) in enumerate([("T=8, large beta", (5, 3), torch.float64, 2),
                                                     ("cosine(T=50)", (4, 1, 2, 3), torch.float32, 1),
                                                     ("linear(T=1000)", (6, 2, 3, 4), torch.float64, 2)]):
            g = _gen(100 + j, salt)
            xt, eps_hat, noise = (_randn(shape, g, dtype) for _ in range(3))
            out.append(Case(f"{name}, x {_shape_text(shape)} {_dt(dtype)}, t = {t}",
                            (S[name], xt, t, eps_hat, noise), dtype,
                            frozenset({_dt(dtype), "image" if len(shape) == 4 else "flat",
                                       "t=1" if t == 1 else "t>1"})))
    return out


def _val(sched: schedules.Schedule, name: str, t: int) -> float:
    return float(getattr(sched, name)[t])


def _ddpm_mutant(case: Case, k: dict[str, Any]) -> tuple[torch.Tensor]:
    sched, xt, t, eps_hat, noise = case.args
    xt, eps_hat, noise = _f64(xt, eps_hat, noise)
    ts = t + k.get("shift", 0)
    ab, alpha, beta, bt = (_val(sched, n, ts) for n in ("alpha_bar", "alpha", "beta", "beta_tilde"))
    with torch.no_grad():
        den = torch.tensor(1 - (ab if k.get("eps_ab", "alpha_bar") == "alpha_bar" else alpha), dtype=torch.float64)
        den = den.sqrt() if k.get("eps_sqrt", True) else den
        out_a = torch.tensor(alpha if k.get("outer", "alpha") == "alpha" else ab, dtype=torch.float64)
        out_a = out_a.sqrt() if k.get("outer_sqrt", True) else out_a
        mean = (xt + k.get("eps_sign", -1) * (beta / den) * eps_hat) / out_a  # [DDPM] Eq. 11 with the knobs
        sig = {"sqrt_beta": math.sqrt(beta), "beta": beta, "sqrt_beta_tilde": math.sqrt(max(bt, 0.0)),
               "none": 0.0}[k.get("sigma", "sqrt_beta")]
        if t == 1 and not k.get("noise_t1", False):
            return (mean,)
        return (mean + sig * noise,)  # [DDPM] Algorithm 2, line 4


DDPM_STEP_SOLUTION = '''\
def my_ddpm_step(sched, xt, t, eps_hat, noise):
    """One ancestral step x_t -> x_{t-1} ([DDPM] Algorithm 2, line 4; Eq. 11) with sigma_t^2 = beta_t:

        x_{t-1} = (x_t - beta_t / sqrt(1 - alpha_bar_t) * eps_hat) / sqrt(alpha_t) + sigma_t * z,

    and no noise at t = 1 (Algorithm 2, line 3: z = 0 if t = 1).
    xt, eps_hat, noise (= z): tensors (B, ...). t: one Python int in 1..T for the whole batch.
    Returns x_{t-1}, with xt's shape and dtype.
    """
    alpha, beta, ab = float(sched.alpha[t]), float(sched.beta[t]), float(sched.alpha_bar[t])
    mean = (xt - beta / math.sqrt(1 - ab) * eps_hat) / math.sqrt(alpha)
    if t == 1:
        return mean
    return mean + math.sqrt(beta) * noise
'''

# ------------------------------------------------------------------------------------------------------------------
# 5. denoising score matching  ([DSM]; notebook 05 Eq. 4)
# ------------------------------------------------------------------------------------------------------------------
_DSM_FACTORS = (
    *_XT_FACTORS[:2],
    Factor("target", ("score", "variance", "plus", "eps", "minus_eps"),
           {"variance": "-ε/(1 - ᾱ_t) as the target (the variance where the standard deviation √(1 - ᾱ_t) "
                        "belongs)",
            "plus": "the target's sign flipped (+ε/√(1 - ᾱ_t); the score points back towards x_0: "
                    "-ε/√(1 - ᾱ_t))",
            "eps": "ε itself as the target (that is the ε-prediction loss; the score target is -ε/√(1 - ᾱ_t))",
            "minus_eps": "-ε as the target (the score is -ε/√(1 - ᾱ_t): the 1/√(1 - ᾱ_t) is missing)"}),
    Factor("half", (0.5, 1.0), {1.0: "no factor 1/2 in front of the squared error"}),
    Factor("reduction", ("sum_dims", "mean", "sum"),
           {"mean": "a mean over the data dimensions where the squared norm sums them",
            "sum": "a sum over the batch in place of the mean"}),
    Factor("weight", ("none", "sigma2"), {"sigma2": "a weight λ = 1 - ᾱ_t on each term (that turns DSM into "
                                                    "L_simple/2 for ε_θ = -√(1 - ᾱ_t) s_θ; the exercise asks for "
                                                    "the unweighted DSM loss)"}),
    Factor("model_input", ("xt", "x0"), {"x0": "the score model called on x_0 instead of the noised x_t"}),
)


def _dsm_mutant(case: Case, k: dict[str, Any]) -> tuple[torch.Tensor]:
    model, sched, x0, t, noise = case.args
    x0, noise = _f64(x0, noise)
    xt = _xt_mutant(sched, x0, t, noise, k)
    ab = _tab(sched, k.get("table", "alpha_bar"), t + k.get("shift", 0), x0)
    sign, power = {"score": (-1, 0.5), "variance": (-1, 1.0), "plus": (1, 0.5), "eps": (1, 0.0),
                   "minus_eps": (-1, 0.0)}[k.get("target", "score")]
    target = sign * noise / (1 - ab) ** power  # ∇ log q(x_t | x_0) = -ε/√(1 - ᾱ_t) at the default knobs
    with torch.no_grad():
        s = model(xt if k.get("model_input", "xt") == "xt" else x0, t)
    err = k.get("half", 0.5) * (s - target) ** 2
    if k.get("weight", "none") == "sigma2":
        err = err * (1 - _tab(sched, "alpha_bar", t, x0))
    red = k.get("reduction", "sum_dims")
    out = err.flatten(1).sum(1).mean() if red == "sum_dims" else err.mean() if red == "mean" else err.sum()
    return (out,)


DSM_SOLUTION = '''\
def my_dsm_loss(score_model, sched, x0, t, noise):
    """Denoising score matching at the steps t ([DSM]; notebook 05, Eq. 4):

        1/2 E || s_theta(x_t, t) - grad log q(x_t | x_0) ||^2,  grad log q(x_t | x_0) = -noise / sqrt(1 - alpha_bar_t),

    with x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) noise; the squared norm sums over the data dimensions,
    the expectation is the mean over the batch.
    score_model(xt, t) -> s (B, ...). x0, noise: (B, ...). t: LongTensor (B,) in 1..T. Returns a 0-d tensor.
    """
    ab = sched.alpha_bar.to(x0)[t].view(-1, *[1] * (x0.dim() - 1))  # (B, 1, ..., 1)
    xt = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
    target = -noise / (1 - ab).sqrt()
    return 0.5 * ((score_model(xt, t) - target) ** 2).flatten(1).sum(1).mean()
'''

# ------------------------------------------------------------------------------------------------------------------
# 6. the DDIM step with η  ([DDIM] Eq. 12, 16)
# ------------------------------------------------------------------------------------------------------------------
_DDIM_FACTORS = (
    Factor("prev", ("t_prev", "t-1"), {"t-1": "ᾱ_{t-1} in place of ᾱ_{t_prev} (on a strided chain the previous "
                                              "step is t_prev, not t - 1)"}),
    Factor("x0_sqrt", (True, False), {False: "no square root in x̂_0 (ᾱ_t and 1 - ᾱ_t where √ᾱ_t and √(1 - ᾱ_t) "
                                             "belong)"}),
    Factor("coef_sqrt", (True, False), {False: "ᾱ_prev in place of √ᾱ_prev in front of x̂_0"}),
    Factor("sigma", ("eq16", "eta_in_root", "squared", "no_ratio", "one_step"),
           {"eta_in_root": "η inside the square root of σ_t (Eq. 16 has σ_t = η √(...) √(...))",
            "squared": "σ_t² used as σ_t (no square roots in Eq. 16)",
            "no_ratio": "σ_t without the factor √((1 - ᾱ_prev)/(1 - ᾱ_t))",
            "one_step": "1 - α_t of the full chain in place of 1 - ᾱ_t/ᾱ_prev in σ_t (they differ when t_prev < "
                        "t - 1)"}),
    Factor("dir", ("eq12", "no_sigma", "no_sqrt"),
           {"no_sigma": "√(1 - ᾱ_prev) as the direction coefficient, without - σ_t²",
            "no_sqrt": "no square root on the direction coefficient 1 - ᾱ_prev - σ_t²"}),
    Factor("noise", ("sigma", "none", "sigma2"), {"none": "no σ_t z term", "sigma2": "σ_t² z in place of σ_t z"}),
)


def _ddim_mutant(case: Case, k: dict[str, Any]) -> tuple[torch.Tensor]:
    sched, xt, t, t_prev, eps_hat, eta, noise = case.args
    xt, eps_hat, noise = _f64(xt, eps_hat, noise)
    ab = _val(sched, "alpha_bar", t)
    abp = _val(sched, "alpha_bar", t_prev if k.get("prev", "t_prev") == "t_prev" else t - 1)
    if k.get("x0_sqrt", True):
        x0_hat = (xt - math.sqrt(1 - ab) * eps_hat) / math.sqrt(ab)  # [DDIM] Eq. 12, predicted x_0
    else:
        x0_hat = (xt - (1 - ab) * eps_hat) / ab
    r, q = (1 - abp) / (1 - ab), 1 - ab / abp
    form = k.get("sigma", "eq16")
    if form == "eq16":
        sigma = eta * math.sqrt(r) * math.sqrt(q)  # [DDIM] Eq. 16
    elif form == "eta_in_root":
        sigma = math.sqrt(eta * r * q)
    elif form == "squared":
        sigma = eta * r * q
    elif form == "no_ratio":
        sigma = eta * math.sqrt(q)
    else:
        sigma = eta * math.sqrt(r) * math.sqrt(_val(sched, "beta", t))
    d = k.get("dir", "eq12")
    inner = 1 - abp - (0.0 if d == "no_sigma" else sigma ** 2)
    dcoef = math.sqrt(inner) if (d != "no_sqrt" and inner >= 0) else (inner if d == "no_sqrt" else math.nan)
    c = math.sqrt(abp) if k.get("coef_sqrt", True) else abp
    nz = {"sigma": sigma, "none": 0.0, "sigma2": sigma ** 2}[k.get("noise", "sigma")]
    return (c * x0_hat + dcoef * eps_hat + nz * noise,)  # [DDIM] Eq. 12 with the knobs


DDIM_STEP_SOLUTION = '''\
def my_ddim_step(sched, xt, t, t_prev, eps_hat, eta, noise):
    """One DDIM step x_t -> x_{t_prev} ([DDIM] Eq. 12) with sigma_t(eta) of Eq. 16:

        x0_hat = (x_t - sqrt(1 - ab_t) eps_hat) / sqrt(ab_t)
        sigma  = eta * sqrt((1 - ab_prev) / (1 - ab_t)) * sqrt(1 - ab_t / ab_prev)
        x_prev = sqrt(ab_prev) x0_hat + sqrt(1 - ab_prev - sigma^2) eps_hat + sigma * noise

    where ab_t = sched.alpha_bar[t] and ab_prev = sched.alpha_bar[t_prev] (t_prev may be any step below t, and 0).
    xt, eps_hat, noise: tensors (B, ...). t, t_prev: Python ints, 0 <= t_prev < t <= T. eta: a float >= 0.
    """
    ab, abp = float(sched.alpha_bar[t]), float(sched.alpha_bar[t_prev])
    x0_hat = (xt - math.sqrt(1 - ab) * eps_hat) / math.sqrt(ab)
    sigma = eta * math.sqrt((1 - abp) / (1 - ab)) * math.sqrt(1 - ab / abp)
    return math.sqrt(abp) * x0_hat + math.sqrt(1 - abp - sigma ** 2) * eps_hat + sigma * noise
'''

# ------------------------------------------------------------------------------------------------------------------
# 7. classifier-free guidance with one batched forward pass  ([CFG] Eq. 6)
# ------------------------------------------------------------------------------------------------------------------
_CFG_FACTORS = (
    Factor("form", ("cfg", "scale", "reversed"),
           {"scale": "w used as the diffusers/Imagen guidance scale s: ε_u + w (ε_c - ε_u); [CFG] Eq. 6 is "
                     "(1 + w) ε_c - w ε_u, i.e. s = 1 + w",
            "reversed": "the guidance direction reversed: ε_c - w (ε_c - ε_u) = (1 - w) ε_c + w ε_u pushes away "
                        "from the class"}),
    Factor("halves", ("right", "swapped"), {"swapped": "the conditional and unconditional halves of the batched "
                                                       "output swapped (the first B rows came from the labels c)"}),
    Factor("null", ("null", "zero", "cond"),
           {"zero": "label 0 as the 'unconditional' label (that is a real class; the null label is "
                    "model.null_label)",
            "cond": "the class labels c in both halves (no unconditional pass at all)"}),
)


def _cfg_cases() -> list[Case]:
    cases = []
    ws = (0.0, 1.5, 4.0, 2.0, 0.5, 3.0)
    for c, w in zip(_batched_cases(7, ("model", "xt", "t"), classes=4), ws, strict=True):
        model, xt, t = c.args
        g = _gen(len(cases), 77)
        cond = torch.randint(1, 4, (xt.shape[0],), generator=g)  # classes 1..3: label 0 and the null label 4 differ
        cases.append(Case(c.label.replace(", t =", f", w = {w}, cond = {cond.tolist()}, t ="),
                          (model, xt, t, cond, w), c.dtype, c.tags | ({"w=0"} if w == 0 else set()), c.t_rows))
    return cases


def _cfg_mutant(case: Case, k: dict[str, Any]) -> tuple[torch.Tensor]:
    model, xt, t, cond, w = case.args
    (xt,) = _f64(xt)
    null = {"null": torch.full_like(cond, model.null_label), "zero": torch.zeros_like(cond),
            "cond": cond}[k.get("null", "null")]
    with torch.no_grad():
        e_c, e_u = model(xt, t, cond), model(xt, t, null)
    if k.get("halves", "right") == "swapped":
        e_c, e_u = e_u, e_c
    form = k.get("form", "cfg")
    if form == "cfg":
        return ((1 + w) * e_c - w * e_u,)  # [CFG] Eq. 6
    if form == "scale":
        return (e_u + w * (e_c - e_u),)
    return (e_c - w * (e_c - e_u),)


CFG_SOLUTION = '''\
def my_cfg_eps(model, xt, t, cond, w):
    """Classifier-free guidance ([CFG] Eq. 6): eps_tilde = (1 + w) eps(x_t, c) - w eps(x_t, null),
    with both predictions from ONE forward pass on a batch of 2B: the conditional half first, then the same x_t
    with the null label model.null_label. w = 0 is plain conditional sampling.
    model(x, t, cond) -> eps (2B, ...). xt: (B, ...). t, cond: LongTensors (B,). w: a float.
    Returns eps_tilde (B, ...).
    """
    null = torch.full_like(cond, model.null_label)
    eps = model(torch.cat([xt, xt]), torch.cat([t, t]), torch.cat([cond, null]))  # (2B, ...)
    eps_c, eps_u = eps.chunk(2)
    return (1 + w) * eps_c - w * eps_u
'''


# ------------------------------------------------------------------------------------------------------------------
# Stubs and prompts
# ------------------------------------------------------------------------------------------------------------------
def _stub(solution: str) -> str:
    """The solution's def line and docstring with ``...`` as the body (what the student notebook shows)."""
    lines = solution.splitlines()
    end = next(i for i, line in enumerate(lines) if i > 1 and line.strip().endswith('"""'))
    return "\n".join(lines[: end + 1] + ["    ..."]) + "\n"


def _ref_q_sample(case: Case) -> tuple[torch.Tensor]:
    sched, x0, t, noise = case.args
    return (forward.q_sample(sched, x0, t, noise),)


def _ref_posterior(case: Case) -> tuple[torch.Tensor, torch.Tensor]:
    sched, x0, xt, t = case.args
    mean, var, _ = forward.q_posterior(sched, x0, xt, t)
    return mean, var


def _ref_training_loss(case: Case) -> tuple[torch.Tensor]:
    model, sched, x0, t, noise = case.args
    with torch.no_grad():
        return (losses.training_losses(model, sched, x0, t=t, noise=noise).mean(),)  # [DDPM] Eq. 14


def _ref_ddpm(case: Case) -> tuple[torch.Tensor]:
    sched, xt, t, eps_hat, noise = case.args
    return (samplers.ddpm_step(sched, xt, t, eps_hat, var_type="beta", noise=noise),)


def _ref_dsm(case: Case) -> tuple[torch.Tensor]:
    # independent of _dsm_mutant: the package's q_sample and score_from_eps ([SDE] / [DSM])
    model, sched, x0, t, noise = case.args
    xt = forward.q_sample(sched, x0, t, noise)
    with torch.no_grad():
        s = model(xt, t)
    target = forward.score_from_eps(sched, t, noise)  # ∇ log q(x_t | x_0) = -ε/√(1 - ᾱ_t)
    return (0.5 * losses.sum_flat((s - target) ** 2).mean(),)


def _ref_ddim(case: Case) -> tuple[torch.Tensor]:
    sched, xt, t, t_prev, eps_hat, eta, noise = case.args
    return (samplers.ddim_step(sched, xt, t, t_prev, eps_hat, eta=eta, noise=noise),)


def _ref_cfg(case: Case) -> tuple[torch.Tensor]:
    model, xt, t, cond, w = case.args
    with torch.no_grad():
        e_c, e_u = model(xt, t, cond), model(xt, t, torch.full_like(cond, model.null_label))
    return (samplers.cfg_eps(e_c, e_u, w),)


_PROMPTS = {
    "q_sample": "Write `my_q_sample`: draw $x_t = \\sqrt{\\bar\\alpha_t}\\,x_0 + \\sqrt{1-\\bar\\alpha_t}\\,\\epsilon$ "
                "([DDPM] Eq. 4) for a batch with one $t$ per row. `t` is a LongTensor `(B,)`; `x0` may be `(B, D)` "
                "or `(B, C, H, W)`, float32 or float64. The grader runs it on several schedules, shapes and "
                "dtypes and names the classic bugs.",
    "q_posterior": "Write `my_q_posterior`: the mean $\\tilde\\mu_t$ and variance $\\tilde\\beta_t$ of "
                   "$q(x_{t-1}\\mid x_t, x_0)$ ([DDPM] Eq. 6-7), one $t$ per row.",
    "training_loss": "Write `my_training_loss`: one evaluation of $L_\\text{simple}$ ([DDPM] Algorithm 1, "
                     "lines 2-5) for a given batch `x0`, steps `t` and noise `noise` (given, so the result is "
                     "reproducible), as a mean over batch and dimensions, differentiable in the model's parameters.",
    "ddpm_step": "Write `my_ddpm_step`: one step of [DDPM] Algorithm 2 with $\\sigma_t^2 = \\beta_t$ and the given "
                 "noise `noise` ($z$); remember line 3.",
    "dsm_loss": "Write `my_dsm_loss`: the denoising score matching loss (4) for a score model $s_\\theta(x_t, t)$ "
                "and given `x0`, `t`, `noise`.",
    "ddim_step": "Write `my_ddim_step`: one step of [DDIM] Eq. 12 from `t` to `t_prev` (any smaller step, as on a "
                 "strided chain) with $\\sigma_t(\\eta)$ of Eq. 16 and the given noise.",
    "cfg_eps": "Write `my_cfg_eps`: classifier-free guidance ([CFG] Eq. 6) with **one** forward pass on a batch of "
           "$2B$ (conditional half first, then the null label `model.null_label`).",
}


def _exercise(id: str, title: str, func: str, cite: str, outputs: tuple[str, ...], subject: str,
              cases: Callable[[], list[Case]], ref: Callable, mut: Callable, factors: tuple[Factor, ...],
              solution: str, notebook: str, **kw: Any) -> Exercise:
    return Exercise(id=id, title=title, func_name=func, cite=cite, outputs=outputs, subject=subject,
                    make_cases=cases, reference=ref, mutant=mut, factors=factors, stub=_stub(solution),
                    solution=solution, prompt=_PROMPTS[id], notebook=notebook, **kw)


def _q_sample_mutant(case: Case, k: dict[str, Any]) -> tuple[torch.Tensor]:
    sched, x0, t, noise = case.args
    x0, noise = _f64(x0, noise)
    return (_xt_mutant(sched, x0, t, noise, k),)


EXERCISES: dict[str, Exercise] = {e.id: e for e in (
    _exercise("q_sample", "Sample the forward process", "my_q_sample", "[DDPM] Eq. 4", ("x_t",),
              "the forward sample √ᾱ_t x_0 + √(1 - ᾱ_t) ε",
              lambda: _batched_cases(1, ("sched", "x0", "t", "noise")), _ref_q_sample, _q_sample_mutant,
              _XT_FACTORS, Q_SAMPLE_SOLUTION, "01_forward_process"),
    _exercise("q_posterior", "Posterior mean and variance", "my_q_posterior", "[DDPM] Eq. 6-7", ("mean", "var"),
              "the posterior q(x_{t-1} | x_t, x_0)", lambda: _batched_cases(2, ("sched", "x0", "xt", "t")),
              _ref_posterior, _post_mutant,
              _POST_FACTORS, POSTERIOR_SOLUTION, "02_reverse_posterior", broadcast_ok=frozenset({"var"})),
    _exercise("training_loss", "The L_simple training step", "my_training_loss", "[DDPM] Algorithm 1, Eq. 14",
              ("loss",), "L_simple", lambda: _batched_cases(3, ("model", "sched", "x0", "t", "noise")),
              _ref_training_loss,
              _loss_mutant, _LOSS_FACTORS, TRAINING_LOSS_SOLUTION, "04_training_objectives", kind="loss"),
    _exercise("ddpm_step", "The ancestral sampling step", "my_ddpm_step", "[DDPM] Algorithm 2, Eq. 11",
              ("x_{t-1}",), "the ancestral step", lambda: _steps_cases(4, with_prev=False), _ref_ddpm,
              _ddpm_mutant, _DDPM_FACTORS, DDPM_STEP_SOLUTION, "04_training_objectives"),
    _exercise("dsm_loss", "The denoising score matching loss", "my_dsm_loss", "[DSM]; notebook 05 Eq. 4",
              ("loss",), "the DSM loss", lambda: _batched_cases(5, ("model", "sched", "x0", "t", "noise")),
              _ref_dsm,
              _dsm_mutant, _DSM_FACTORS, DSM_SOLUTION, "05_score_matching", kind="loss"),
    _exercise("ddim_step", "The DDIM step with eta", "my_ddim_step", "[DDIM] Eq. 12, 16", ("x_{t_prev}",),
              "the DDIM step", lambda: _steps_cases(6, with_prev=True), _ref_ddim, _ddim_mutant, _DDIM_FACTORS,
              DDIM_STEP_SOLUTION, "06_ddim"),
    _exercise("cfg_eps", "Classifier-free guidance in one batched pass", "my_cfg_eps", "[CFG] Eq. 6",
              ("eps_tilde",), "classifier-free guidance", _cfg_cases, _ref_cfg, _cfg_mutant, _CFG_FACTORS, CFG_SOLUTION,
              "07_classifier_free_guidance", single_pass=True),
)}
