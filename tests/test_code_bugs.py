"""Hand-written learner functions with the classic bugs, written the way a learner writes them (not generated from
the grader's knob table): each must be named by ``check_function``. The reference solutions must grade correct."""

from __future__ import annotations

import math

import pytest
import torch

from ddpm_lessons.checks.code import check_function, exercises


def _b(x):  # the learner's own broadcast helper
    return (-1, *[1] * (x.dim() - 1))


# ---------------------------------------------------------------------------------------------- q_sample
def qs_alpha(sched, x0, t, noise):
    a = sched.alpha[t].to(x0).view(_b(x0))
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


def qs_t_minus_1(sched, x0, t, noise):
    ab = sched.alpha_bar[t - 1].to(x0.dtype).view(_b(x0))
    return torch.sqrt(ab) * x0 + torch.sqrt(1 - ab) * noise


def qs_no_sqrt_noise(sched, x0, t, noise):
    ab = sched.alpha_bar.to(x0)[t].view(_b(x0))
    return ab.sqrt() * x0 + (1 - ab) * noise


def qs_no_sqrt_both(sched, x0, t, noise):
    ab = sched.alpha_bar.to(x0)[t].view(_b(x0))
    return ab * x0 + (1 - ab) * noise


def qs_swapped(sched, x0, t, noise):
    ab = sched.alpha_bar.to(x0)[t].view(_b(x0))
    return (1 - ab).sqrt() * x0 + ab.sqrt() * noise


def qs_broadcast(sched, x0, t, noise):
    ab = sched.alpha_bar.to(x0)[t]
    return ab.sqrt() * x0 + (1 - ab).sqrt() * noise


def qs_broadcast_2d_only(sched, x0, t, noise):
    ab = sched.alpha_bar.to(x0)[t][:, None]
    return ab.sqrt() * x0 + (1 - ab).sqrt() * noise


def qs_float64(sched, x0, t, noise):
    ab = sched.alpha_bar[t].view(_b(x0))
    return ab.sqrt() * x0 + (1 - ab).sqrt() * noise


def qs_randn(sched, x0, t, noise):
    ab = sched.alpha_bar.to(x0)[t].view(_b(x0))
    return ab.sqrt() * x0 + (1 - ab).sqrt() * torch.randn_like(x0)


def qs_in_place(sched, x0, t, noise):
    ab = sched.alpha_bar.to(x0)[t].view(_b(x0))
    x0 *= ab.sqrt()
    return x0 + (1 - ab).sqrt() * noise


def qs_index_plus_1(sched, x0, t, noise):
    ab = sched.alpha_bar.to(x0)[t + 1].view(_b(x0))
    return ab.sqrt() * x0 + (1 - ab).sqrt() * noise


def qs_loop(sched, x0, t, noise):
    while True:
        pass


def qs_no_return(sched, x0, t, noise):
    ab = sched.alpha_bar.to(x0)[t].view(_b(x0))
    ab.sqrt() * x0 + (1 - ab).sqrt() * noise


# ---------------------------------------------------------------------------------------------- q_posterior
def _coefs(sched, t, x):
    s = _b(x)
    return (sched.alpha_bar[t].view(s), sched.alpha_bar_prev[t].view(s), sched.alpha[t].view(s),
            sched.beta[t].view(s))


def post_beta_var(sched, x0, xt, t):
    ab, abp, a, b = _coefs(sched, t, x0)
    mean = abp.sqrt() * b / (1 - ab) * x0 + a.sqrt() * (1 - abp) / (1 - ab) * xt
    return mean.to(x0.dtype), b.to(x0.dtype)


def post_ab_in_x0_coef(sched, x0, xt, t):
    ab, abp, a, b = _coefs(sched, t, x0)
    mean = ab.sqrt() * b / (1 - ab) * x0 + a.sqrt() * (1 - abp) / (1 - ab) * xt
    return mean.to(x0.dtype), ((1 - abp) / (1 - ab) * b).to(x0.dtype)


def post_ab_in_xt_coef_and_std(sched, x0, xt, t):
    ab, abp, a, b = _coefs(sched, t, x0)
    mean = abp.sqrt() * b / (1 - ab) * x0 + ab.sqrt() * (1 - abp) / (1 - ab) * xt
    return mean.to(x0.dtype), ((1 - abp) / (1 - ab) * b).sqrt().to(x0.dtype)


def post_swapped(sched, x0, xt, t):
    ab, abp, a, b = _coefs(sched, t, x0)
    mean = abp.sqrt() * b / (1 - ab) * xt + a.sqrt() * (1 - abp) / (1 - ab) * x0
    return mean.to(x0.dtype), ((1 - abp) / (1 - ab) * b).to(x0.dtype)


def post_inverted_var(sched, x0, xt, t):
    ab, abp, a, b = _coefs(sched, t, x0)
    mean = abp.sqrt() * b / (1 - ab) * x0 + a.sqrt() * (1 - abp) / (1 - ab) * xt
    return mean.to(x0.dtype), ((1 - ab) / (1 - abp) * b).to(x0.dtype)


def post_t_minus_1(sched, x0, xt, t):
    s = _b(x0)
    ab, abp = sched.alpha_bar[t - 1].view(s), sched.alpha_bar[t - 2].view(s)  # "t-1 and t-2"
    a, b = sched.alpha[t - 1].view(s), sched.beta[t - 1].view(s)
    abp = torch.where(t.view(s) - 2 < 0, torch.ones_like(abp), abp)
    mean = abp.sqrt() * b / (1 - ab) * x0 + a.sqrt() * (1 - abp) / (1 - ab) * xt
    return mean.to(x0.dtype), ((1 - abp) / (1 - ab) * b).to(x0.dtype)


def post_var_b(sched, x0, xt, t):  # variance of shape (B,): broadcasts wrongly
    ab, abp, a, b = _coefs(sched, t, x0)
    mean = abp.sqrt() * b / (1 - ab) * x0 + a.sqrt() * (1 - abp) / (1 - ab) * xt
    return mean.to(x0.dtype), ((1 - sched.alpha_bar_prev[t]) / (1 - sched.alpha_bar[t]) * sched.beta[t]).to(x0.dtype)


# ---------------------------------------------------------------------------------------------- training_loss
def loss_target_x0(model, sched, x0, t, noise):
    ab = sched.alpha_bar.to(x0)[t].view(_b(x0))
    xt = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
    return ((x0 - model(xt, t)) ** 2).mean()


def loss_model_on_x0(model, sched, x0, t, noise):
    return ((noise - model(x0, t)) ** 2).mean()


def loss_alpha(model, sched, x0, t, noise):
    a = sched.alpha.to(x0)[t].view(_b(x0))
    xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
    return ((noise - model(xt, t)) ** 2).mean()


def loss_sum_dims(model, sched, x0, t, noise):
    ab = sched.alpha_bar.to(x0)[t].view(_b(x0))
    xt = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
    return ((noise - model(xt, t)) ** 2).flatten(1).sum(1).mean()


def loss_l1(model, sched, x0, t, noise):
    ab = sched.alpha_bar.to(x0)[t].view(_b(x0))
    xt = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
    return (noise - model(xt, t)).abs().mean()


def loss_item(model, sched, x0, t, noise):
    ab = sched.alpha_bar.to(x0)[t].view(_b(x0))
    xt = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
    return ((noise - model(xt, t)) ** 2).mean().item()


def loss_detached(model, sched, x0, t, noise):
    ab = sched.alpha_bar.to(x0)[t].view(_b(x0))
    xt = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
    with torch.no_grad():
        return ((noise - model(xt, t)) ** 2).mean()


def loss_own_t(model, sched, x0, t, noise):
    t = torch.randint(1, sched.T + 1, (x0.shape[0],))
    ab = sched.alpha_bar.to(x0)[t].view(_b(x0))
    xt = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
    return ((noise - model(xt, t)) ** 2).mean()


def loss_t_normalised(model, sched, x0, t, noise):
    ab = sched.alpha_bar.to(x0)[t].view(_b(x0))
    xt = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
    return ((noise - model(xt, t / sched.T)) ** 2).mean()


def loss_per_example(model, sched, x0, t, noise):
    ab = sched.alpha_bar.to(x0)[t].view(_b(x0))
    xt = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
    return ((noise - model(xt, t)) ** 2).flatten(1).mean(1)


# ---------------------------------------------------------------------------------------------- ddpm_step
def ddpm_alpha_in_eps(sched, xt, t, eps_hat, noise):
    a, b = float(sched.alpha[t]), float(sched.beta[t])
    mean = (xt - b / math.sqrt(1 - a) * eps_hat) / math.sqrt(a)
    return mean if t == 1 else mean + math.sqrt(b) * noise


def ddpm_noise_at_1(sched, xt, t, eps_hat, noise):
    a, b, ab = float(sched.alpha[t]), float(sched.beta[t]), float(sched.alpha_bar[t])
    mean = (xt - b / math.sqrt(1 - ab) * eps_hat) / math.sqrt(a)
    return mean + math.sqrt(b) * noise


def ddpm_beta_tilde(sched, xt, t, eps_hat, noise):
    a, b, ab = float(sched.alpha[t]), float(sched.beta[t]), float(sched.alpha_bar[t])
    mean = (xt - b / math.sqrt(1 - ab) * eps_hat) / math.sqrt(a)
    return mean if t == 1 else mean + math.sqrt(float(sched.beta_tilde[t])) * noise


def ddpm_no_sqrt_eps(sched, xt, t, eps_hat, noise):
    a, b, ab = float(sched.alpha[t]), float(sched.beta[t]), float(sched.alpha_bar[t])
    mean = (xt - b / (1 - ab) * eps_hat) / math.sqrt(a)
    return mean if t == 1 else mean + math.sqrt(b) * noise


def ddpm_sigma_is_beta(sched, xt, t, eps_hat, noise):
    a, b, ab = float(sched.alpha[t]), float(sched.beta[t]), float(sched.alpha_bar[t])
    mean = (xt - b / math.sqrt(1 - ab) * eps_hat) / math.sqrt(a)
    return mean if t == 1 else mean + b * noise


def ddpm_outer_alpha_bar(sched, xt, t, eps_hat, noise):
    b, ab = float(sched.beta[t]), float(sched.alpha_bar[t])
    mean = (xt - b / math.sqrt(1 - ab) * eps_hat) / math.sqrt(ab)
    return mean if t == 1 else mean + math.sqrt(b) * noise


def ddpm_t_minus_1(sched, xt, t, eps_hat, noise):  # "0-based" thinking: coefficients of step t live at t - 1
    a, b, ab = float(sched.alpha[t - 1]), float(sched.beta[t - 1]), float(sched.alpha_bar[t - 1])
    mean = (xt - b / math.sqrt(1 - ab) * eps_hat) / math.sqrt(a)
    return mean if t == 1 else mean + math.sqrt(b) * noise


def ddpm_plus_eps(sched, xt, t, eps_hat, noise):
    a, b, ab = float(sched.alpha[t]), float(sched.beta[t]), float(sched.alpha_bar[t])
    mean = (xt + b / math.sqrt(1 - ab) * eps_hat) / math.sqrt(a)
    return mean if t == 1 else mean + math.sqrt(b) * noise


def ddpm_randn(sched, xt, t, eps_hat, noise):
    a, b, ab = float(sched.alpha[t]), float(sched.beta[t]), float(sched.alpha_bar[t])
    mean = (xt - b / math.sqrt(1 - ab) * eps_hat) / math.sqrt(a)
    return mean if t == 1 else mean + math.sqrt(b) * torch.randn_like(xt)


def ddpm_in_place(sched, xt, t, eps_hat, noise):
    a, b, ab = float(sched.alpha[t]), float(sched.beta[t]), float(sched.alpha_bar[t])
    xt -= b / math.sqrt(1 - ab) * eps_hat
    xt /= math.sqrt(a)
    return xt if t == 1 else xt + math.sqrt(b) * noise


# ---------------------------------------------------------------------------------------------- dsm_loss
def _xt(sched, x0, t, noise):
    ab = sched.alpha_bar.to(x0)[t].view(_b(x0))
    return ab, ab.sqrt() * x0 + (1 - ab).sqrt() * noise


def dsm_variance(score_model, sched, x0, t, noise):
    ab, xt = _xt(sched, x0, t, noise)
    return 0.5 * ((score_model(xt, t) + noise / (1 - ab)) ** 2).flatten(1).sum(1).mean()


def dsm_sign(score_model, sched, x0, t, noise):
    ab, xt = _xt(sched, x0, t, noise)
    return 0.5 * ((score_model(xt, t) - noise / (1 - ab).sqrt()) ** 2).flatten(1).sum(1).mean()


def dsm_eps_target(score_model, sched, x0, t, noise):
    ab, xt = _xt(sched, x0, t, noise)
    return 0.5 * ((score_model(xt, t) - noise) ** 2).flatten(1).sum(1).mean()


def dsm_minus_eps(score_model, sched, x0, t, noise):
    ab, xt = _xt(sched, x0, t, noise)
    return 0.5 * ((score_model(xt, t) + noise) ** 2).flatten(1).sum(1).mean()


def dsm_model_on_x0(score_model, sched, x0, t, noise):
    ab, xt = _xt(sched, x0, t, noise)
    return 0.5 * ((score_model(x0, t) + noise / (1 - ab).sqrt()) ** 2).flatten(1).sum(1).mean()


def dsm_no_half(score_model, sched, x0, t, noise):
    ab, xt = _xt(sched, x0, t, noise)
    return ((score_model(xt, t) + noise / (1 - ab).sqrt()) ** 2).flatten(1).sum(1).mean()


def dsm_mean_dims(score_model, sched, x0, t, noise):
    ab, xt = _xt(sched, x0, t, noise)
    return 0.5 * ((score_model(xt, t) + noise / (1 - ab).sqrt()) ** 2).mean()


def dsm_weighted(score_model, sched, x0, t, noise):
    ab, xt = _xt(sched, x0, t, noise)
    return 0.5 * ((1 - ab) * (score_model(xt, t) + noise / (1 - ab).sqrt()) ** 2).flatten(1).sum(1).mean()


def dsm_broadcast(score_model, sched, x0, t, noise):
    ab = sched.alpha_bar.to(x0)[t]
    xt = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
    return 0.5 * ((score_model(xt, t) + noise / (1 - ab).sqrt()) ** 2).flatten(1).sum(1).mean()


# ---------------------------------------------------------------------------------------------- ddim_step
def _x0(sched, xt, t, eps_hat):
    ab = float(sched.alpha_bar[t])
    return ab, (xt - math.sqrt(1 - ab) * eps_hat) / math.sqrt(ab)


def ddim_eta_in_root(sched, xt, t, t_prev, eps_hat, eta, noise):
    ab, x0 = _x0(sched, xt, t, eps_hat)
    abp = float(sched.alpha_bar[t_prev])
    sigma = math.sqrt(eta * (1 - abp) / (1 - ab) * (1 - ab / abp))
    return math.sqrt(abp) * x0 + math.sqrt(1 - abp - sigma ** 2) * eps_hat + sigma * noise


def ddim_t_minus_1(sched, xt, t, t_prev, eps_hat, eta, noise):
    ab, x0 = _x0(sched, xt, t, eps_hat)
    abp = float(sched.alpha_bar_prev[t])  # ᾱ_{t-1}: right only when t_prev = t - 1
    sigma = eta * math.sqrt((1 - abp) / (1 - ab)) * math.sqrt(1 - ab / abp)
    return math.sqrt(abp) * x0 + math.sqrt(1 - abp - sigma ** 2) * eps_hat + sigma * noise


def ddim_dir_without_sigma(sched, xt, t, t_prev, eps_hat, eta, noise):
    ab, x0 = _x0(sched, xt, t, eps_hat)
    abp = float(sched.alpha_bar[t_prev])
    sigma = eta * math.sqrt((1 - abp) / (1 - ab)) * math.sqrt(1 - ab / abp)
    return math.sqrt(abp) * x0 + math.sqrt(1 - abp) * eps_hat + sigma * noise


def ddim_one_step_alpha(sched, xt, t, t_prev, eps_hat, eta, noise):
    ab, x0 = _x0(sched, xt, t, eps_hat)
    abp = float(sched.alpha_bar[t_prev])
    sigma = eta * math.sqrt((1 - abp) / (1 - ab)) * math.sqrt(float(sched.beta[t]))
    return math.sqrt(abp) * x0 + math.sqrt(1 - abp - sigma ** 2) * eps_hat + sigma * noise


def ddim_no_noise(sched, xt, t, t_prev, eps_hat, eta, noise):
    ab, x0 = _x0(sched, xt, t, eps_hat)
    abp = float(sched.alpha_bar[t_prev])
    sigma = eta * math.sqrt((1 - abp) / (1 - ab)) * math.sqrt(1 - ab / abp)
    return math.sqrt(abp) * x0 + math.sqrt(1 - abp - sigma ** 2) * eps_hat


def ddim_squared_sigma(sched, xt, t, t_prev, eps_hat, eta, noise):
    ab, x0 = _x0(sched, xt, t, eps_hat)
    abp = float(sched.alpha_bar[t_prev])
    sigma2 = eta * (1 - abp) / (1 - ab) * (1 - ab / abp)
    return math.sqrt(abp) * x0 + math.sqrt(1 - abp - sigma2 ** 2) * eps_hat + sigma2 * noise


def ddim_abp_no_sqrt(sched, xt, t, t_prev, eps_hat, eta, noise):
    ab, x0 = _x0(sched, xt, t, eps_hat)
    abp = float(sched.alpha_bar[t_prev])
    sigma = eta * math.sqrt((1 - abp) / (1 - ab)) * math.sqrt(1 - ab / abp)
    return abp * x0 + math.sqrt(1 - abp - sigma ** 2) * eps_hat + sigma * noise


# ---------------------------------------------------------------------------------------------- cfg
def cfg_scale(model, xt, t, cond, w):
    null = torch.full_like(cond, model.null_label)
    e_c, e_u = model(torch.cat([xt, xt]), torch.cat([t, t]), torch.cat([cond, null])).chunk(2)
    return e_u + w * (e_c - e_u)


def cfg_swapped(model, xt, t, cond, w):
    null = torch.full_like(cond, model.null_label)
    e_u, e_c = model(torch.cat([xt, xt]), torch.cat([t, t]), torch.cat([cond, null])).chunk(2)
    return (1 + w) * e_c - w * e_u


def cfg_label_zero(model, xt, t, cond, w):
    e_c, e_u = model(torch.cat([xt, xt]), torch.cat([t, t]), torch.cat([cond, torch.zeros_like(cond)])).chunk(2)
    return (1 + w) * e_c - w * e_u


def cfg_two_passes(model, xt, t, cond, w):
    e_c = model(xt, t, cond)
    e_u = model(xt, t, torch.full_like(cond, model.null_label))
    return (1 + w) * e_c - w * e_u


def cfg_reversed(model, xt, t, cond, w):
    null = torch.full_like(cond, model.null_label)
    e_c, e_u = model(torch.cat([xt, xt]), torch.cat([t, t]), torch.cat([cond, null])).chunk(2)
    return e_c - w * (e_c - e_u)


def cfg_t_not_doubled(model, xt, t, cond, w):
    null = torch.full_like(cond, model.null_label)
    e_c, e_u = model(torch.cat([xt, xt]), t, torch.cat([cond, null])).chunk(2)
    return (1 + w) * e_c - w * e_u


def cfg_cat_dim1(model, xt, t, cond, w):
    null = torch.full_like(cond, model.null_label)
    e_c, e_u = model(torch.cat([xt, xt], dim=1), torch.cat([t, t]), torch.cat([cond, null])).chunk(2)
    return (1 + w) * e_c - w * e_u


def post_no_sqrt_x0(sched, x0, xt, t):
    ab, abp, a, b = _coefs(sched, t, x0)
    mean = abp * b / (1 - ab) * x0 + a.sqrt() * (1 - abp) / (1 - ab) * xt
    return mean.to(x0.dtype), ((1 - abp) / (1 - ab) * b).to(x0.dtype)


def post_var_of_q_t(sched, x0, xt, t):
    ab, abp, a, b = _coefs(sched, t, x0)
    mean = abp.sqrt() * b / (1 - ab) * x0 + a.sqrt() * (1 - abp) / (1 - ab) * xt
    return mean.to(x0.dtype), (1 - ab).to(x0.dtype)


def loss_model_at_t_minus_1(model, sched, x0, t, noise):
    ab = sched.alpha_bar.to(x0)[t].view(_b(x0))
    xt = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
    return ((noise - model(xt, t - 1)) ** 2).mean()


def ddim_x0_no_sqrt(sched, xt, t, t_prev, eps_hat, eta, noise):
    ab, abp = float(sched.alpha_bar[t]), float(sched.alpha_bar[t_prev])
    x0 = (xt - (1 - ab) * eps_hat) / ab
    sigma = eta * math.sqrt((1 - abp) / (1 - ab)) * math.sqrt(1 - ab / abp)
    return math.sqrt(abp) * x0 + math.sqrt(1 - abp - sigma ** 2) * eps_hat + sigma * noise


def ddim_sigma2_noise(sched, xt, t, t_prev, eps_hat, eta, noise):
    ab, x0 = _x0(sched, xt, t, eps_hat)
    abp = float(sched.alpha_bar[t_prev])
    sigma = eta * math.sqrt((1 - abp) / (1 - ab)) * math.sqrt(1 - ab / abp)
    return math.sqrt(abp) * x0 + math.sqrt(1 - abp - sigma ** 2) * eps_hat + sigma ** 2 * noise


def ddim_no_ratio(sched, xt, t, t_prev, eps_hat, eta, noise):
    ab, x0 = _x0(sched, xt, t, eps_hat)
    abp = float(sched.alpha_bar[t_prev])
    sigma = eta * math.sqrt(1 - ab / abp)
    return math.sqrt(abp) * x0 + math.sqrt(1 - abp - sigma ** 2) * eps_hat + sigma * noise


def cfg_both_conditional(model, xt, t, cond, w):
    e_c, e_u = model(torch.cat([xt, xt]), torch.cat([t, t]), torch.cat([cond, cond])).chunk(2)
    return (1 + w) * e_c - w * e_u


# (exercise, function, expected status, a substring of the mistake tag or of the feedback)
BUGS = [
    ("q_sample", qs_alpha, "known_mistake", "table=alpha"),
    ("q_sample", qs_t_minus_1, "known_mistake", "shift=-1"),
    ("q_sample", qs_no_sqrt_noise, "known_mistake", "sqrt_eps=False"),
    ("q_sample", qs_no_sqrt_both, "known_mistake", "sqrt_x0=False+sqrt_eps=False"),
    ("q_sample", qs_swapped, "known_mistake", "swap=True"),
    ("q_sample", qs_broadcast, "invalid", "lines up with the *last* axis"),
    ("q_sample", qs_broadcast_2d_only, "invalid", "lines up with the *last* axis"),
    ("q_sample", qs_float64, "invalid", "The values are right otherwise"),
    ("q_sample", qs_randn, "known_mistake", "global_randomness"),
    ("q_sample", qs_in_place, "known_mistake", "in_place"),
    ("q_sample", qs_index_plus_1, "invalid", "not `sched.alpha_bar[t + 1]`"),
    ("q_sample", qs_no_return, "invalid", "forget the `return`"),
    ("q_posterior", post_beta_var, "known_mistake", "var=beta"),
    ("q_posterior", post_ab_in_x0_coef, "known_mistake", "x0_ab=cur"),
    ("q_posterior", post_ab_in_xt_coef_and_std, "known_mistake", "xt_a=alpha_bar ; var=std"),
    ("q_posterior", post_swapped, "known_mistake", "swap=True"),
    ("q_posterior", post_inverted_var, "known_mistake", "var=inverted"),
    ("q_posterior", post_t_minus_1, "known_mistake", "shift=-1"),
    ("q_posterior", post_no_sqrt_x0, "known_mistake", "x0_sqrt=False"),
    ("q_posterior", post_var_of_q_t, "known_mistake", "var=one_m_ab"),
    ("q_posterior", post_var_b, "invalid", "reshape it to (B, 1, ..., 1)"),
    ("training_loss", loss_target_x0, "known_mistake", "target=x0"),
    ("training_loss", loss_model_on_x0, "known_mistake", "model_input=x0"),
    ("training_loss", loss_alpha, "known_mistake", "table=alpha"),
    ("training_loss", loss_sum_dims, "known_mistake", "reduction=sum_dims"),
    ("training_loss", loss_l1, "known_mistake", "power=1"),
    ("training_loss", loss_model_at_t_minus_1, "known_mistake", "model_t=-1"),
    ("training_loss", loss_item, "invalid", "`.item()`"),
    ("training_loss", loss_detached, "known_mistake", "no_gradient"),
    ("training_loss", loss_own_t, "known_mistake", "global_randomness"),
    ("training_loss", loss_t_normalised, "invalid", "LongTensor"),
    ("training_loss", loss_per_example, "invalid", "has shape (5,); expected ()"),
    ("ddpm_step", ddpm_alpha_in_eps, "known_mistake", "eps_ab=alpha"),
    ("ddpm_step", ddpm_noise_at_1, "known_mistake", "noise_t1=True"),
    ("ddpm_step", ddpm_beta_tilde, "known_mistake", "sigma=sqrt_beta_tilde"),
    ("ddpm_step", ddpm_no_sqrt_eps, "known_mistake", "eps_sqrt=False"),
    ("ddpm_step", ddpm_sigma_is_beta, "known_mistake", "sigma=beta"),
    ("ddpm_step", ddpm_outer_alpha_bar, "known_mistake", "outer=alpha_bar"),
    ("ddpm_step", ddpm_t_minus_1, "known_mistake", "shift=-1"),
    ("ddpm_step", ddpm_plus_eps, "known_mistake", "eps_sign=1"),
    ("ddpm_step", ddpm_randn, "known_mistake", "global_randomness"),
    ("ddpm_step", ddpm_in_place, "known_mistake", "in_place"),
    ("dsm_loss", dsm_variance, "known_mistake", "target=variance"),
    ("dsm_loss", dsm_sign, "known_mistake", "target=plus"),
    ("dsm_loss", dsm_eps_target, "known_mistake", "target=eps"),
    ("dsm_loss", dsm_minus_eps, "known_mistake", "target=minus_eps"),
    ("dsm_loss", dsm_model_on_x0, "known_mistake", "model_input=x0"),
    ("dsm_loss", dsm_no_half, "known_mistake", "half=1.0"),
    ("dsm_loss", dsm_mean_dims, "known_mistake", "reduction=mean"),
    ("dsm_loss", dsm_weighted, "known_mistake", "weight=sigma2"),
    ("dsm_loss", dsm_broadcast, "invalid", "lines up with the *last* axis"),
    ("ddim_step", ddim_eta_in_root, "known_mistake", "sigma=eta_in_root"),
    ("ddim_step", ddim_t_minus_1, "known_mistake", "prev=t-1"),
    ("ddim_step", ddim_dir_without_sigma, "known_mistake", "dir=no_sigma"),
    ("ddim_step", ddim_one_step_alpha, "known_mistake", "sigma=one_step"),
    ("ddim_step", ddim_no_noise, "known_mistake", "noise=none"),
    ("ddim_step", ddim_squared_sigma, "known_mistake", "sigma=squared"),
    ("ddim_step", ddim_abp_no_sqrt, "known_mistake", "coef_sqrt=False"),
    ("ddim_step", ddim_x0_no_sqrt, "known_mistake", "x0_sqrt=False"),
    ("ddim_step", ddim_sigma2_noise, "known_mistake", "noise=sigma2"),
    ("ddim_step", ddim_no_ratio, "known_mistake", "sigma=no_ratio"),
    ("cfg_eps", cfg_scale, "known_mistake", "form=scale"),
    ("cfg_eps", cfg_swapped, "known_mistake", "halves=swapped"),
    ("cfg_eps", cfg_label_zero, "known_mistake", "null=zero"),
    ("cfg_eps", cfg_both_conditional, "known_mistake", "null=cond"),
    ("cfg_eps", cfg_two_passes, "known_mistake", "two_passes"),
    ("cfg_eps", cfg_reversed, "known_mistake", "form=reversed"),
    ("cfg_eps", cfg_t_not_doubled, "invalid", "t must have shape"),
    ("cfg_eps", cfg_cat_dim1, "invalid", "for x_t of shape"),
]


@pytest.mark.parametrize("ex", exercises(), ids=lambda e: e.id)
def test_reference_solution_is_correct(ex):
    ns = {"math": math, "torch": torch}
    exec(ex.solution, ns)
    res = check_function(ex.id, ns[ex.func_name])
    assert res.status == "correct", res.feedback


@pytest.mark.parametrize("ex_id,fn,status,needle", BUGS, ids=[f"{b[0]}-{b[1].__name__}" for b in BUGS])
def test_classic_bug_is_named(ex_id, fn, status, needle):
    res = check_function(ex_id, fn)
    assert res.status == status, f"{res.status}: {res.mistake} {res.feedback}"
    assert needle in (res.mistake or "") + " " + res.feedback, f"{res.mistake} {res.feedback}"


def test_every_exercise_has_at_least_five_bugs_tested():
    counts = {e.id: sum(b[0] == e.id for b in BUGS) for e in exercises()}
    assert min(counts.values()) >= 5, counts
