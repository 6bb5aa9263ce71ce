"""The model-call contract, stated once: how every denoiser in this package is called and what it declares.

    model(xt, t, cond=None) -> out
        xt    (B, C, ...) noisy data x_t
        t     (B,) LongTensor of the model's training chain's time steps, 1..T (paper indexing). The samplers and
              the bound pass one step for the whole batch as a stride-0 expansion (:func:`shared_t`); a model may
              read ``is_shared_t(t)`` and embed the step once (the MLP does), or treat ``t`` as any (B,) tensor
        cond  None, or (B,) LongTensor of class ids in 0..num_classes; the id ``null_label`` (= num_classes) and
              cond=None both mean "unconditional" ([CFG]: one network, a learned null class)
        out   the prediction named by ``objective``, shape of xt; with ``learn_sigma`` twice the channels
              (B, 2C, ...): the prediction, then the variance logits v of [IDDPM] Eq. 15

Attributes a model declares (read through the functions below, each with its one default, so that any
``nn.Module`` or plain callable with these attributes works, the exact oracles of ``ddpm_lessons.exact`` included):
    objective    "eps" | "x0" | "v"                    default "eps"      ([DDPM] Eq. 11, [V] §4)
    learn_sigma  bool                                   default False      ([IDDPM] §3.1)
    num_classes  int, 0 for an unconditional model      default 0
    null_label   num_classes when conditional, else None

Helpers: :func:`shared_t` / :func:`is_shared_t` (one time step for a whole batch), :func:`split_output`
(prediction and variance logits), :func:`class_ids` (normalise a ``cond`` argument), :func:`device_of` (where a
model's parameters live, the CPU for a parameterless model) and :func:`eval_mode` (a context manager that restores
train/eval mode).

References:
    [DDPM]  Ho, Jain, Abbeel 2020, arXiv:2006.11239
    [IDDPM] Nichol, Dhariwal 2021, arXiv:2102.09672
    [CFG]   Ho, Salimans 2022, arXiv:2207.12598
    [V]     Salimans, Ho 2022, arXiv:2202.00512
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

__all__ = ["OBJECTIVES", "check_objective", "declare", "objective", "learn_sigma", "num_classes", "null_label",
           "shared_t", "is_shared_t", "split_output", "class_ids", "device_of", "eval_mode"]

OBJECTIVES = ("eps", "x0", "v")

Model = Callable[..., torch.Tensor]


def check_objective(name: str) -> str:
    """``name`` if it is one of :data:`OBJECTIVES`, else ValueError."""
    if name not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {name!r}")
    return name


def declare(model: torch.nn.Module, objective: str, learn_sigma: bool, num_classes: int) -> None:
    """Set the contract's four attributes on a denoiser being built (after checking them); the models call this."""
    check_objective(objective)
    if num_classes < 0:
        raise ValueError(f"num_classes must be >= 0, got {num_classes}")
    model.objective = objective
    model.learn_sigma = bool(learn_sigma)
    model.num_classes = int(num_classes)
    model.null_label = model.num_classes if model.num_classes > 0 else None


def objective(model: Model) -> str:
    """What the model's output predicts: 'eps' (default), 'x0' or 'v'."""
    return check_objective(getattr(model, "objective", "eps"))


def learn_sigma(model: Model) -> bool:
    """Whether the output carries variance logits after the prediction ([IDDPM] Eq. 15); default False."""
    return bool(getattr(model, "learn_sigma", False))


def num_classes(model: Model) -> int:
    """Number of classes the model is conditioned on; 0 (default) for an unconditional model."""
    return int(getattr(model, "num_classes", 0) or 0)


def null_label(model: Model) -> int | None:
    """The class id meaning "unconditional": ``model.null_label`` if set, else num_classes; None if unconditional."""
    n = num_classes(model)
    if n == 0:
        return None
    label = getattr(model, "null_label", None)
    return n if label is None else int(label)


def shared_t(step: int, batch: int, device: torch.device | str | None = None) -> torch.Tensor:
    """The time step ``step`` for a batch of ``batch`` examples: a (batch,) LongTensor that is a stride-0 expansion of
    one element (a view: nothing is copied, and nothing has to be synchronised to recognise it)."""
    return torch.full((1,), int(step), dtype=torch.long, device=device).expand(batch)


def is_shared_t(t: torch.Tensor) -> bool:
    """True when ``t`` (B,) is one step expanded over the batch (:func:`shared_t`): ``t[:1]`` then stands for all of it.

    Read from the strides only, so it costs no device synchronisation; a materialised tensor of equal steps is False.
    """
    return t.ndim == 1 and t.shape[0] > 1 and t.stride(0) == 0


def split_output(model: Model, out: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Split an output (B, C or 2C, ...) into the prediction (B, C, ...) and the variance logits (or None)."""
    if learn_sigma(model):
        if out.shape[1] != 2 * x.shape[1]:
            raise ValueError(f"a learn_sigma model must return 2x the input channels, got {tuple(out.shape)}")
        return out[:, : x.shape[1]], out[:, x.shape[1]:]
    if out.shape != x.shape:
        raise ValueError(f"the model returned shape {tuple(out.shape)} for input {tuple(x.shape)}")
    return out, None


def class_ids(model: Model, cond: int | torch.Tensor | None, batch: int, device: torch.device
              ) -> torch.Tensor | None:
    """Normalise ``cond`` (None, an int class, or ids (B,)) to a LongTensor (B,) on ``device``, or None.

    Ids must lie in 0..num_classes (num_classes = the null label). An int is checked on the host and filled on
    ``device`` (no copy); ids on an accelerator are range-checked with ``torch._assert_async`` (no host sync).
    """
    if cond is None:
        return None
    n = num_classes(model)
    if n <= 0:
        raise ValueError("cond was given but the model is unconditional (model.num_classes is 0)")
    bad_range = f"cond class ids must lie in 0..{n - 1} (or {null_label(model)} for unconditional)"
    if isinstance(cond, int):
        if not 0 <= cond <= n:
            raise ValueError(bad_range)
        return torch.full((batch,), int(cond), dtype=torch.long, device=device)
    c = torch.as_tensor(cond, dtype=torch.long, device=device)
    if c.dim() == 0:
        c = c.expand(batch)
    if c.shape != (batch,):
        raise ValueError(f"cond must be an int or a LongTensor of shape ({batch},), got shape {tuple(c.shape)}")
    if c.device.type != "cpu":
        torch._assert_async(((c >= 0) & (c <= n)).all(), bad_range)
    elif int(c.min()) < 0 or int(c.max()) > n:
        raise ValueError(bad_range)
    return c


def device_of(model: Model) -> torch.device:
    """The device of the model's first parameter (or buffer); the CPU for a model without either."""
    if isinstance(model, torch.nn.Module):
        first = next(itertools.chain(model.parameters(), model.buffers()), None)
        if first is not None:
            return first.device
    return torch.device("cpu")


@contextmanager
def eval_mode(model: Model) -> Iterator[Model]:
    """``with eval_mode(model):`` runs the block in eval mode and restores the model's train/eval flag after."""
    if not isinstance(model, torch.nn.Module):
        yield model
        return
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)
