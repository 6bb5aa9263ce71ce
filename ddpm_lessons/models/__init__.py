"""Denoising networks: embeddings (time; class with a null label), a residual MLP for 2-D data, the [DDPM] U-Net,
and :mod:`~ddpm_lessons.models.protocol`, the model-call contract every denoiser follows and every caller reads.

In short (the full statement is in ``protocol``): ``model(xt, t, cond=None)`` returns the prediction named by
``model.objective`` ("eps", "x0" or "v") with the shape of xt (twice the channels when ``model.learn_sigma``); t is
a (B,) tensor of paper time steps 1..T; cond is None or (B,) class ids, where ``model.null_label``
(== ``model.num_classes``) also means "unconditional". Each model keeps the keyword arguments that rebuild it in
``model.config``; :func:`model_spec` / :func:`build_model` turn that into a plain description and back.

References:
    [DDPM] Ho, Jain, Abbeel 2020, arXiv:2006.11239
    [CFG]  Ho, Salimans 2022, arXiv:2207.12598
"""

from __future__ import annotations

from typing import Any

from torch import nn

from ddpm_lessons.models import protocol
from ddpm_lessons.models.embeddings import ClassEmbedding, SinusoidalEmbedding, sinusoidal_embedding
from ddpm_lessons.models.mlp import MLPDenoiser, mixture_mlp
from ddpm_lessons.models.unet import UNet, ddpm_cifar10, digits_unet

__all__ = [
    "ClassEmbedding",
    "MLPDenoiser",
    "SinusoidalEmbedding",
    "UNet",
    "build_model",
    "count_parameters",
    "ddpm_cifar10",
    "digits_unet",
    "mixture_mlp",
    "model_spec",
    "protocol",
    "sinusoidal_embedding",
]

_CLASSES: dict[str, type[nn.Module]] = {"MLPDenoiser": MLPDenoiser, "UNet": UNet}


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (all, or only those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def model_spec(model: nn.Module) -> dict[str, Any]:
    """``{"class": name, "config": kwargs}``: a plain description from which :func:`build_model` rebuilds it."""
    name = type(model).__name__
    if name not in _CLASSES or not hasattr(model, "config"):
        raise ValueError(f"model must be one of {sorted(_CLASSES)}, got {name}")
    return {"class": name, "config": dict(model.config)}


def build_model(spec: dict[str, Any]) -> nn.Module:
    """Rebuild a model (freshly initialised) from :func:`model_spec`'s description."""
    name = spec.get("class")
    if name not in _CLASSES:
        raise ValueError(f"spec['class'] must be one of {sorted(_CLASSES)}, got {name!r}")
    return _CLASSES[name](**spec["config"])
