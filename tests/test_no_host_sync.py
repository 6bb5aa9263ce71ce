"""The hot paths (training loss, one sampler step, the sampling loop) never synchronise with the device and never copy
a schedule table from the host per call once the schedule is on the device (``Schedule.to``); the tables behind that
are the formulas' values, bit for bit.

No GPU is needed: the checks run on the "meta" device, whose tensors have shapes but no data, so any host read of a
device value (``.item()``, ``int()``, ``bool()``, ``.tolist()``, ``nonzero``, boolean-mask indexing) raises. On top of
that, :class:`HostSyncGuard` watches every aten op and fails on ops that synchronise on a CUDA device even where meta
lets them through (``index_put_`` with a boolean mask), and counts host <-> device copies.
"""

from __future__ import annotations

import copy
import dataclasses
import pickle

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from ddpm_lessons import forward as fwd
from ddpm_lessons import losses, reverse, samplers, schedules

META = torch.device("meta")
aten = torch.ops.aten

# ops whose result has to reach the host before Python can go on: a device sync on CUDA
_SYNC_OPS = {aten._local_scalar_dense, aten.is_nonzero, aten.equal, aten.nonzero, aten.masked_select,
             aten.unique_consecutive, aten._unique2, aten.repeat_interleave}
_INDEX_OPS = {aten.index, aten.index_put, aten.index_put_, aten._index_put_impl_}
_COPY_OPS = {aten._to_copy, aten.copy_, aten._copy_from, aten._copy_from_and_resize, aten.lift_fresh_copy}


class HostSyncGuard(TorchDispatchMode):
    """Fail on any op that would synchronise a device with the host; record host <-> device copies."""

    def __init__(self):
        super().__init__()
        self.copies: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        tensors = [x for x in tree_leaves((args, kwargs)) if isinstance(x, torch.Tensor)]
        on_device = any(x.device.type != "cpu" for x in tensors)
        packet = func.overloadpacket
        if on_device and packet in _SYNC_OPS:
            raise AssertionError(f"host synchronisation: {func}")
        if on_device and packet in _INDEX_OPS:  # a boolean mask becomes nonzero(mask): its size needs the host
            if any(i is not None and i.dtype in (torch.bool, torch.uint8) for i in args[1]):
                raise AssertionError(f"boolean-mask indexing (host synchronisation): {func}")
        out = func(*args, **kwargs)
        if packet in _COPY_OPS:
            devices = {x.device.type for x in tensors + [x for x in tree_leaves(out) if isinstance(x, torch.Tensor)]}
            if len(devices) > 1:
                self.copies.append(f"{func} {sorted(devices)}")
        return out


def test_the_guard_sees_syncs_and_copies():
    """The instrument itself: a host table gathered by a device index is copied on every call, a table already on
    the device never, and the syncs meta lets through are caught."""
    sched = schedules.linear(10)
    t = torch.randint(1, 11, (4,), device=META)
    x = torch.empty(4, 3, device=META)
    with HostSyncGuard() as guard:
        for _ in range(3):
            fwd.extract(sched.beta_tilde, t, x)  # a CPU table: copied every call
    assert len(guard.copies) == 3
    on_device = sched.to(META)
    with HostSyncGuard() as guard:
        for _ in range(3):
            fwd.extract(on_device.beta_tilde, t, x)
    assert guard.copies == []
    with pytest.raises(AssertionError, match="boolean-mask"), HostSyncGuard():
        x[t == 1] = torch.zeros(3, device=META)  # index_put_ with a mask: no error on meta, a sync on CUDA
    with pytest.raises(AssertionError, match="host synchronisation"), HostSyncGuard():
        bool((t == 1).any())


class MetaNet(torch.nn.Module):
    """A tiny conditional network following the model protocol (objective, learn_sigma, num_classes, null_label)."""

    num_classes, null_label = 3, 3

    def __init__(self, C: int, objective: str = "eps", learn_sigma: bool = False):
        super().__init__()
        self.objective, self.learn_sigma = objective, learn_sigma
        self.scale = torch.nn.Parameter(torch.ones(C))
        self.emb = torch.nn.Embedding(self.num_classes + 1, C)  # class ids 0..2 and the null label 3
        self.head = torch.nn.Linear(C, 2 * C if learn_sigma else C)

    def forward(self, xt, t, cond=None):
        chan = (1, -1) + (1,) * (xt.dim() - 2)  # broadcast a (C,) vector over (B, C, ...)
        h = xt * self.scale.reshape(chan) + torch.sin(t.to(xt.dtype) / 100).reshape((-1,) + (1,) * (xt.dim() - 1))
        if cond is not None:
            h = h + self.emb(cond).reshape(xt.shape[:2] + (1,) * (xt.dim() - 2))
        return self.head(h.movedim(1, -1)).movedim(-1, 1)


def _meta_net(C: int, objective: str = "eps", learn_sigma: bool = False) -> MetaNet:
    with META:
        return MetaNet(C, objective, learn_sigma)


# 2-D toy data with the continuous decoder, and small images with the discretized one
DATA = {"toy2d": ((8, 2), None), "image": ((8, 1, 4, 4), 17)}


@pytest.mark.parametrize("data", sorted(DATA))
@pytest.mark.parametrize("objective", ["eps", "x0", "v"])
@pytest.mark.parametrize("loss_type,learn_sigma", [("simple", False), ("vlb", False), ("vlb", True),
                                                   ("hybrid", True)])
def test_training_losses_never_sync(loss_type, learn_sigma, objective, data):
    shape, bins = DATA[data]
    sched = schedules.linear(50, 1e-3, 0.2).to(META)  # once, before the loop
    net = _meta_net(shape[1], objective, learn_sigma)
    x0 = torch.empty(shape, device=META)
    cond = torch.zeros(shape[0], dtype=torch.long, device=META)
    kw = dict(loss_type=loss_type, bins=bins)
    with HostSyncGuard() as guard:
        drawn = losses.training_losses(net, sched, x0, cond=cond, **kw)  # t and noise drawn on the device
        t = torch.randint(1, sched.T + 1, (shape[0],), device=META)
        given = losses.training_losses(net, sched, x0, t=t, noise=torch.randn(shape, device=META), **kw)
        (drawn.sum() + given.sum()).backward()
    assert guard.copies == []
    for loss in (drawn, given):
        assert loss.device == META and loss.shape == (shape[0],)
    assert net.scale.grad is not None and net.scale.grad.device == META


def test_check_t_on_a_device_queues_the_range_check():
    sched = schedules.linear(10)
    seen = []

    class Record(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            seen.append(func.overloadpacket)
            return func(*args, **(kwargs or {}))

    with HostSyncGuard(), Record():
        t = sched.check_t(torch.randint(1, 11, (4,), device=META))
    assert t.dtype == torch.long and t.device == META
    assert aten._assert_async in seen  # checked on the device, not skipped
    with pytest.raises(ValueError, match=r"1\.\.10.*got values in 0\.\.3"):  # the CPU keeps its ValueError
        sched.check_t(torch.tensor([0, 3]))
    with pytest.raises(ValueError, match=r"1\.\.10"):
        sched.check_t(11)


@pytest.mark.parametrize("learn_sigma", [False, True])
@pytest.mark.parametrize("objective", ["eps", "x0", "v"])
def test_sampler_step_never_syncs(objective, learn_sigma):
    sched = schedules.linear(20, 1e-3, 0.2).to(META)
    shape = (4, 1, 4, 4)
    net = _meta_net(1, objective, learn_sigma)
    xt = torch.empty(shape, device=META)
    ids = torch.tensor([0, 1, 2, 3]).to(META)  # class ids incl. the null label, already on the device
    with HostSyncGuard() as guard:
        eps = samplers.guided_eps(net, sched, xt, 5)
        guided = samplers.guided_eps(net, sched, xt, 5, cond=1, w=2.0)
        guided_ids = samplers.guided_eps(net, sched, xt, 5, cond=ids, w=0.5)
        eps_hat, log_var = samplers.predict(net, sched, xt, 5, cond=ids, w=1.0)
        outs = [eps, guided, guided_ids, eps_hat,
                samplers.ddim_step(sched, xt, 5, 2, eps_hat),
                samplers.ddim_step(sched, xt, 5, 4, eps_hat, eta=1.0, clip_x0=True),
                samplers.ddim_step(sched, xt, 1, 0, eps_hat, eta=0.5),
                samplers.ddpm_step(sched, xt, 5, eps_hat, log_var=log_var),
                samplers.ddpm_step(sched, xt, 5, eps_hat, var_type="beta", clip_x0=True),
                samplers.ddpm_step(sched, xt, 1, eps_hat)]
    assert guard.copies == []
    assert (log_var is not None) == learn_sigma
    for out in outs + ([log_var] if learn_sigma else []):
        assert out.device == META and out.shape == shape


@pytest.mark.parametrize("method", ["ddpm", "ddim"])
def test_sampling_loop_copies_tables_once_not_per_step(method):
    """``sample`` runs its whole loop on the meta device; given a CPU schedule it moves the chain's tables once (a
    respaced chain is a new schedule), so the number of copies does not grow with the number of steps; given a
    schedule already on the device it copies nothing."""
    sched = schedules.linear(40, 1e-3, 0.2)
    shape = (4, 2)
    net = _meta_net(2, "v", learn_sigma=True)
    kw = dict(method=method, eta=0.5, cond=2, w=1.5, progress=False)
    n_tables = sum(torch.is_tensor(getattr(sched, f.name)) for f in dataclasses.fields(sched))
    counts = {}
    for steps in (5, 20):
        with HostSyncGuard() as guard:
            x = samplers.sample(net, sched, shape, steps=steps, **kw)
        assert x.device == META and x.shape == shape
        counts[steps] = len(guard.copies)
    assert counts[5] == counts[20] <= n_tables
    on_device = sched.to(META)
    with HostSyncGuard() as guard:
        samplers.sample(net, on_device, shape, **kw)  # the full chain is the schedule itself
    assert guard.copies == []


def test_schedule_to_device_keeps_host_floats():
    """``Schedule.to`` moves every table (values unchanged), keeps the CPU copy in ``host``, and is the identity on
    the schedule's own device; deep copies and pickles are whole schedules."""
    sched = schedules.cosine(30)
    moved = sched.to(META)
    assert moved.device == META and sched.to("cpu") is sched and moved.to(META) is moved
    assert moved.host is sched and sched.host is sched
    for f in dataclasses.fields(sched):
        value = getattr(sched, f.name)
        if torch.is_tensor(value):
            assert getattr(moved, f.name).device == META and getattr(moved, f.name).shape == value.shape, f.name
    assert moved.T == sched.T and moved.name == sched.name and "meta" in repr(moved)
    back = schedules.respace(moved, 5)  # respacing reads the host copy and returns to the device
    assert back.device == META and torch.equal(back.host.alpha_bar, schedules.respace(sched, 5).alpha_bar)
    for twin in (copy.deepcopy(sched), pickle.loads(pickle.dumps(sched))):
        assert twin.host is twin and torch.equal(twin.sqrt_alpha_bar, sched.sqrt_alpha_bar)


def test_schedule_tables_are_the_formulas_bit_for_bit():
    """Every table the constructor computes equals the straightforward float64 expression (rtol = atol = 0); the
    hot paths gather these, so CPU results keep the values of the formulas evaluated on every call."""
    sched = schedules.linear(100)
    ab, abp, beta, bt = sched.alpha_bar, sched.alpha_bar_prev, sched.beta, sched.beta_tilde
    post_lv = torch.log(bt.clamp_min(1e-300))
    post_lv[1] = post_lv[2]
    post_lv[0] = post_lv[1]
    sigma2_beta = beta.clone()
    sigma2_beta[1] = bt[2]
    want = {
        "sqrt_alpha_bar": ab.sqrt(), "sqrt_one_minus_alpha_bar": (1 - ab).sqrt(), "one_minus_alpha_bar": 1 - ab,
        "sqrt_recip_alpha_bar": 1 / ab.sqrt(), "sqrt_recipm1_alpha_bar": (1 / ab - 1).sqrt(),
        "posterior_coef_x0": abp.sqrt() * beta / (1 - ab),
        "posterior_coef_xt": sched.alpha.sqrt() * (1 - abp) / (1 - ab),
        "posterior_log_var": post_lv, "log_beta": torch.log(beta.clamp_min(1e-300)),
        "sigma2_beta_tilde": post_lv.exp(), "sigma2_beta": sigma2_beta, "log_sigma2_beta": sigma2_beta.log(),
        "snr": ab / (1 - ab), "log_snr": ab.log() - torch.log1p(-ab),
    }
    for name, value in want.items():
        got = getattr(sched, name)
        assert got.dtype == torch.float64 and got.device.type == "cpu", name
        # index 0 of the posterior coefficients is 0/0 = NaN in both
        torch.testing.assert_close(got, value, rtol=0, atol=0, equal_nan=True, msg=name)
    assert sched.sigma2("beta") is sched.sigma2_beta and sched.log_sigma2("beta_tilde") is sched.posterior_log_var
    with pytest.raises(ValueError, match="var_type"):
        sched.sigma2("sigma")


def test_cpu_hot_paths_bit_identical_to_the_formulas():
    sched = schedules.cosine(50)
    g = torch.Generator().manual_seed(0)
    x0, noise, pred = (torch.randn(6, 3, generator=g) for _ in range(3))
    t = torch.tensor([1, 2, 7, 25, 49, 50])
    ab, abp = sched.alpha_bar, sched.alpha_bar_prev

    def col(table):  # the straightforward float64 gather, one rounding to float32, (B, 1)
        return table[t].to(torch.float32).reshape(-1, 1)

    xt = fwd.q_sample(sched, x0, t, noise)
    assert torch.equal(xt, col(ab.sqrt()) * x0 + col((1 - ab).sqrt()) * noise)
    assert torch.equal(fwd.q_posterior(sched, x0, xt, t)[0],
                       col(abp.sqrt() * sched.beta / (1 - ab)) * x0
                       + col(sched.alpha.sqrt() * (1 - abp) / (1 - ab)) * xt)
    assert torch.equal(fwd.pred_to_x0(sched, xt, t, pred, "eps"),
                       col(1 / ab.sqrt()) * xt - col((1 / ab - 1).sqrt()) * pred)
    assert torch.equal(fwd.pred_to_eps(sched, xt, t, pred, "x0"),
                       (xt - col(ab.sqrt()) * pred) / col((1 - ab).sqrt()))
    assert torch.equal(fwd.pred_to_eps(sched, xt, t, pred, "v"), col(ab.sqrt()) * pred + col((1 - ab).sqrt()) * xt)
    logits = torch.rand(6, 3, generator=g) * 2 - 1
    frac = (logits + 1) / 2
    assert torch.equal(reverse.log_variance(sched, t, xt, logits),
                       frac * col(torch.log(sched.beta.clamp_min(1e-300)))
                       + (1 - frac) * col(sched.posterior_log_var))
    for var_type, sigma2 in (("beta_tilde", sched.sigma2_beta_tilde), ("beta", sched.sigma2_beta)):
        torch.testing.assert_close(reverse.log_variance(sched, t, xt, None, var_type), col(torch.log(sigma2)),
                                   rtol=1e-7, atol=0)
    with pytest.raises(ValueError, match="var_type"):
        reverse.log_variance(sched, t, xt, None, "sigma")


@pytest.mark.parametrize("bins", [None, 17])
@pytest.mark.parametrize("learned", [False, True])
def test_vlb_term_is_the_per_example_definition(bins, learned):
    """The one bound-term implementation (every example evaluates both branches, torch.where picks one) equals the
    per-example definition, the KL for t > 1 and the decoder for t = 1 rows, in values and gradients."""
    sched = schedules.linear(50, 1e-3, 0.2)
    g = torch.Generator().manual_seed(3)
    shape = (10, 2, 3)
    x0 = torch.randint(0, 17, shape, generator=g).float() / 8 - 1  # on the 17-level grid in [-1, 1]
    t = torch.tensor([1, 1, 1, 2, 3, 5, 10, 20, 49, 50])
    xt = fwd.q_sample(sched, x0, t, torch.randn(shape, generator=g))
    mean_hat = (fwd.q_posterior(sched, x0, xt, t)[0] + 0.05 * torch.randn(shape, generator=g)).requires_grad_()
    lv_shape = shape if learned else (shape[0], 1, 1)
    log_var_hat = (fwd.extract(sched.posterior_log_var, t, x0).expand(lv_shape)
                   + 0.1 * torch.randn(lv_shape, generator=g)).requires_grad_()
    out = losses.vlb_term(sched, x0, xt, t, mean_hat, log_var_hat, bins=bins)
    grads = torch.autograd.grad(out.sum(), (mean_hat, log_var_hat))
    rows = []
    for b in range(shape[0]):  # one example at a time, the definition of [DDPM] Eq. 5 and 13
        m, lv = mean_hat[b:b + 1], log_var_hat[b:b + 1].expand(1, *shape[1:])
        if int(t[b]) == 1:
            if bins is None:
                rows.append(-torch.distributions.Normal(m, (0.5 * lv).exp()).log_prob(x0[b:b + 1]).sum())
            else:
                rows.append(-losses.discretized_gaussian_log_likelihood(x0[b:b + 1], m, 0.5 * lv, bins=bins).sum())
        else:
            tm, _, tlv = fwd.q_posterior(sched, x0[b:b + 1], xt[b:b + 1], t[b:b + 1])
            rows.append(losses.gaussian_kl(tm, tlv, m, lv).sum())
    ref = torch.stack(rows)
    ref_grads = torch.autograd.grad(ref.sum(), (mean_hat, log_var_hat))
    # float32 values of order 1..1e2 nats: the same formulas elementwise, differing at most by a few ulp where a
    # kernel takes another (vectorised or scalar) code path for a different batch shape
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    for got, want in zip(grads, ref_grads, strict=True):
        assert torch.isfinite(got).all()
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
