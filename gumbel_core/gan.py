"""The categorical GAN: K learnable logits against a discriminator on (one-hot) vectors."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gumbel_core._validation import check_num_categories
from gumbel_core.estimators import ESTIMATORS, CategoricalEstimator, get_estimator
from gumbel_core.noise import gumbel_noise_like
from gumbel_core.softmax import straight_through

__all__ = [
    "GANConfig",
    "Generator",
    "LogisticDiscriminator",
    "MLPDiscriminator",
    "make_discriminator",
    "CategoricalGAN",
]


@dataclass
class GANConfig:
    """Hyperparameters of the GAN: the generator, the discriminator and their optimizers.

    The online learner's own settings (chunking, the reported average, the temperature
    schedule, drift detection and response) are :class:`gumbel_core.online.LearnerConfig`.
    The defaults are the tuned configuration of ``docs/learner.md``.
    """

    num_categories: int = 5
    estimator: str = "st"
    estimator_options: dict[str, Any] = field(default_factory=dict)
    discriminator: str = "logistic"  # "logistic" (the original post) or "mlp"
    hidden_size: int = 32  # the MLP discriminator's width
    generator_lr: float = 0.02
    discriminator_lr: float = 0.07
    betas: tuple[float, float] = (0.5, 0.999)
    generator_steps: int = 1  # G steps per D step
    label_smoothing: float = 0.0  # real one-hots become (1 - s) * onehot + s / K
    fake_batch_size: int | None = None  # None: as many fake samples as real ones in the batch
    max_fake_batch_size: int = 8192
    init_scale: float = 0.01  # std of the discriminator's initial weights
    # st + logistic D: gradients in closed form instead of autograd (same noise, same result
    # to rounding, about half the operations). False keeps autograd, the reference path.
    closed_form: bool = True
    # No logit may fall more than this many nats below the largest one. Without a bound the
    # logit of a category absent from the stream sinks for ever, and Adam then needs hundreds
    # of thousands of records to lift it when the category appears. The bound is a bias on
    # absent categories (each keeps e**-margin of the largest probability): at 8 nats it was
    # the largest part of the stationary gap to counting where categories are absent
    # (docs/learner.md), at 11 it is not, and with the drift replay the switches settle as
    # fast. None: unbounded.
    logit_margin: float | None = 11.0
    # For estimators whose samples are one-hots (all but soft): D's loss on the fakes is its
    # expectation under the generator's probabilities, sum_k p_k softplus(D(e_k)), instead of
    # a mean over the drawn fakes (Rao-Blackwellised: same expected gradient, less noise).
    # The generator's step still uses the drawn Gumbel-softmax samples. False: D sees the
    # drawn fakes, as in the original post.
    expected_fakes: bool = True

    def __post_init__(self) -> None:
        check_num_categories(self.num_categories)
        if self.estimator not in ESTIMATORS:
            raise ValueError(
                f"unknown estimator {self.estimator!r}; choose one of {', '.join(ESTIMATORS)}"
            )
        if self.discriminator not in ("logistic", "mlp"):
            raise ValueError(
                f"discriminator must be 'logistic' or 'mlp', got {self.discriminator!r}"
            )
        for name in (
            "generator_lr",
            "discriminator_lr",
            "hidden_size",
            "generator_steps",
            "max_fake_batch_size",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if self.fake_batch_size is not None and not self.fake_batch_size > 0:
            raise ValueError(f"fake_batch_size must be None or > 0, got {self.fake_batch_size!r}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing!r}")
        if self.logit_margin is not None and not self.logit_margin > 0:
            raise ValueError(f"logit_margin must be None or > 0, got {self.logit_margin!r}")
        self.betas = (float(self.betas[0]), float(self.betas[1]))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Generator(nn.Module):
    """The generator: ``K`` free logits; samples come from a categorical gradient estimator."""

    def __init__(self, num_categories: int) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(num_categories))  # (K,): starts uniform

    def forward(
        self,
        num_samples: int,
        estimator: CategoricalEstimator,
        tau: float | torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        logits = self.logits.expand(num_samples, -1)  # (N, K)
        return estimator.draw(logits, tau, generator)  # (N, K)

    def probabilities(self) -> torch.Tensor:
        return self.logits.detach().softmax(-1)  # (K,)


class LogisticDiscriminator(nn.Module):
    """Logistic regression on the sample vector, as in the original post: ``w . x + b``."""

    def __init__(self, num_categories: int, init_scale: float, generator: torch.Generator) -> None:
        super().__init__()
        self.linear = nn.Linear(num_categories, 1)
        _init_linear(self.linear, init_scale, generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).squeeze(-1)  # (N, K) -> (N,) logits of "real"


class MLPDiscriminator(nn.Module):
    """A small MLP on the sample vector (one hidden layer, LeakyReLU)."""

    def __init__(
        self, num_categories: int, hidden_size: int, init_scale: float, generator: torch.Generator
    ) -> None:
        super().__init__()
        self.hidden = nn.Linear(num_categories, hidden_size)
        self.out = nn.Linear(hidden_size, 1)
        # The hidden layer needs symmetry breaking at a useful scale; the output starts near 0.
        _init_linear(self.hidden, 1.0 / num_categories**0.5, generator)
        _init_linear(self.out, init_scale, generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(F.leaky_relu(self.hidden(x), 0.2)).squeeze(-1)  # (N, K) -> (N,)


def _init_linear(layer: nn.Linear, scale: float, generator: torch.Generator) -> None:
    # Seeded init from our own generator: no global RNG state is touched.
    with torch.no_grad():
        noise = torch.randn(
            layer.weight.shape, generator=generator, device=generator.device, dtype=torch.float32
        )
        layer.weight.copy_(noise * scale)
        layer.bias.zero_()


def _clear_grads(module: nn.Module) -> None:
    # What optimizer.zero_grad(set_to_none=True) does, without its profiling hooks (a
    # noticeable share of a step at small batches).
    for p in module.parameters():
        p.grad = None


def _adam_step(optimizer: torch.optim.Adam, param: torch.Tensor, grad: torch.Tensor) -> None:
    """Adam's update of one parameter, on the optimizer's own state (so ``state_dict`` and
    the autograd path see the same moments). ``optimizer.step()`` costs more in dispatch
    than the update itself on these few-element tensors. No weight decay, no amsgrad.

    On the CPU the bias corrections are host numbers (cheapest); on a GPU, or with a tensor
    learning rate, they stay tensors, so the update never waits for the device and a CUDA
    graph can capture it."""
    group = optimizer.param_groups[0]
    beta1, beta2 = group["betas"]
    lr = group["lr"]
    state = optimizer.state[param]
    if not state:  # as torch.optim.Adam initialises it (step kept as a float32 tensor)
        state["step"] = torch.zeros((), dtype=torch.float32, device=param.device)
        state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
    step_t = state["step"]
    step_t += 1
    exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
    exp_avg.lerp_(grad, 1.0 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
    if step_t.device.type == "cpu" and not isinstance(lr, torch.Tensor):
        step = float(step_t)
        denom = (exp_avg_sq.sqrt() / (1.0 - beta2**step) ** 0.5).add_(group["eps"])
        param.addcdiv_(exp_avg, denom, value=-lr / (1.0 - beta1**step))
        return
    bias2 = (1.0 - torch.pow(beta2, step_t)).sqrt()  # () tensors: no host read
    denom = (exp_avg_sq.sqrt() / bias2).add_(group["eps"])
    param.sub_(exp_avg / denom * (lr / (1.0 - torch.pow(beta1, step_t))))


def make_discriminator(config: GANConfig, generator: torch.Generator) -> nn.Module:
    """The discriminator ``config.discriminator`` names."""
    if config.discriminator == "mlp":
        return MLPDiscriminator(
            config.num_categories, config.hidden_size, config.init_scale, generator
        )
    return LogisticDiscriminator(config.num_categories, config.init_scale, generator)


SoftSampler = Callable[[torch.Tensor, "float | torch.Tensor"], torch.Tensor]
# Up to this many categories the st closed form lays its fakes out as (K, N) (_sample_st).
SHORT_ROWS_K = 8


def _first_argmax_of_columns(y: torch.Tensor) -> torch.Tensor:
    """``y.argmax(0)`` of a ``(K, N)`` tensor of few rows (the first of equal maxima, as
    argmax), one comparison per row: torch's argmax along dim 0 is 6x slower here."""
    best, idx = y[0].clone(), torch.zeros(y.shape[1], dtype=torch.int64, device=y.device)
    for k in range(1, y.shape[0]):
        idx.masked_fill_(y[k] > best, k)
        best = torch.maximum(best, y[k])
    return idx



class CategoricalGAN(nn.Module):
    """Generator, discriminator and their optimizers; ``step`` trains on one batch of counts.

    The real data enters the discriminator only as one-hot vectors, so a batch is exactly
    summarised by its per-category counts: the real half of the loss is a weighted sum over
    the ``K`` distinct inputs instead of a mean over ``B`` rows.

    :meth:`train_step` is the step itself, written so that nothing in it reads a number back
    from the device: the temperature and the learning rates may be tensors, the losses come
    back as tensors, and a CUDA graph can capture it (``gumbel_core.cuda_graphs``).

    Examples
    --------
    >>> gan = CategoricalGAN(GANConfig(num_categories=3), torch.Generator().manual_seed(0))
    >>> g_loss, d_loss = gan.step(torch.tensor([0.0, 10.0, 6.0]), tau=1.0)
    >>> 0 < d_loss < 2 * 0.7
    True
    """

    real_inputs: torch.Tensor  # (K, K) buffer: the K distinct (smoothed) one-hot real inputs

    def __init__(self, config: GANConfig, generator: torch.Generator) -> None:
        super().__init__()
        self.config = config
        self.estimator = get_estimator(config.estimator, **config.estimator_options)
        self.generator = Generator(config.num_categories)
        self.discriminator = make_discriminator(config, generator)
        device = generator.device
        self.to(device)
        k = config.num_categories
        eye = torch.eye(k, device=device)  # (K, K): a one-hot of each category
        s = config.label_smoothing
        # The K distinct real inputs (the one-hots themselves without label smoothing).
        real_inputs = (1.0 - s) * eye + s / k if s else eye
        self.register_buffer("real_inputs", real_inputs, persistent=False)
        self.register_buffer("one_hots", eye, persistent=False)
        # fused: one kernel per step instead of a Python loop over the update's operations
        # (on CPU tensors too since torch 2.4, hence pyproject's torch floor).
        self.g_optimizer = torch.optim.Adam(
            self.generator.parameters(), lr=config.generator_lr, betas=config.betas, fused=True
        )
        self.d_optimizer = torch.optim.Adam(
            self.discriminator.parameters(),
            lr=config.discriminator_lr,
            betas=config.betas,
            fused=True,
        )

    @property
    def closed_form(self) -> bool:
        """Whether :meth:`train_step` takes the closed-form path (st + logistic D)."""
        return (
            self.config.closed_form
            and self.config.estimator == "st"
            and isinstance(self.discriminator, LogisticDiscriminator)
        )

    @property
    def expected_fakes(self) -> bool:
        """Whether D's fake term is its expectation under the generator (one-hot samples)."""
        return self.config.expected_fakes and self.estimator.hard

    def fake_batch_size(self, real_batch_size: int) -> int:
        wanted = self.config.fake_batch_size or real_batch_size
        return max(1, min(wanted, self.config.max_fake_batch_size))

    def set_lr_scale(self, generator: float, discriminator: float) -> None:
        """Train with ``generator`` and ``discriminator`` times the configured learning rates
        (the drift response's boost). A tensor learning rate (see
        :meth:`use_tensor_learning_rates`) is updated in place, without a host sync."""
        for optimizer, base, scale in (
            (self.g_optimizer, self.config.generator_lr, generator),
            (self.d_optimizer, self.config.discriminator_lr, discriminator),
        ):
            group = optimizer.param_groups[0]
            if isinstance(group["lr"], torch.Tensor):
                group["lr"].fill_(base * scale)
            else:
                group["lr"] = base * scale

    def use_tensor_learning_rates(self) -> None:
        """Keep the learning rates in device tensors, so a captured step reads their current
        values (a Python number would be frozen into the graph)."""
        device = self.generator.logits.device
        for optimizer in (self.g_optimizer, self.d_optimizer):
            group = optimizer.param_groups[0]
            if not isinstance(group["lr"], torch.Tensor):
                group["lr"] = torch.tensor(float(group["lr"]), device=device)

    def step(
        self, counts: torch.Tensor, tau: float, rng: torch.Generator | None = None
    ) -> tuple[float, float]:
        """:meth:`train_step`, with the losses as Python floats."""
        g_loss, d_loss = self.train_step(counts, tau, rng)
        return float(g_loss), float(d_loss)

    def train_step(
        self,
        counts: torch.Tensor,
        tau: float | torch.Tensor,
        rng: torch.Generator | None = None,
        *,
        batch_size: int | None = None,
        sampler: SoftSampler | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One discriminator step and ``generator_steps`` generator steps on a batch's counts.

        Parameters
        ----------
        counts
            ``(K,)`` how often each category occurs in the real batch.
        tau
            The Gumbel-softmax temperature (a number, or a tensor a graph can update).
        rng
            Source of randomness for the fake samples.
        batch_size
            The real batch's size, ``counts.sum()`` (given, it is not read from the device).
        sampler
            For ``st`` and ``soft`` only: ``sampler(logits, tau)`` returns the soft sample
            ``softmax((logits + g) / tau)`` of the ``(N, K)`` logits (e.g. a fused kernel);
            ``None`` draws it with ``rng``.

        Returns
        -------
        tuple of torch.Tensor
            The generator loss (non-saturating) and the discriminator loss, 0-d tensors.
        """
        if batch_size is None:
            batch_size = int(counts.sum())
        real_weights = counts.to(torch.float32) / counts.sum()  # (K,)
        n_fake = self.fake_batch_size(batch_size)
        if self.closed_form:
            return self._step_st_logistic(real_weights, n_fake, tau, rng, sampler)

        d_real = self.discriminator(self.real_inputs)  # (K,)
        fake = self._fake(n_fake, tau, rng, sampler)  # (N, K)
        # BCE with label 1 for real and 0 for fake; softplus(-x) = -log(sigmoid(x)).
        if self.expected_fakes:
            # Without label smoothing the real inputs are the one-hots: D's logits are d_real.
            smoothed = self.config.label_smoothing > 0
            d_cat = self.discriminator(self.one_hots) if smoothed else d_real  # (K,)
            fake_term = (self.generator.probabilities() * F.softplus(d_cat)).sum()
        else:
            fake_term = F.softplus(self.discriminator(fake.detach())).mean()
        d_loss = (real_weights * F.softplus(-d_real)).sum() + fake_term
        _clear_grads(self.discriminator)
        d_loss.backward()
        self.d_optimizer.step()

        g_loss = d_loss
        for i in range(self.config.generator_steps):
            if i > 0:
                fake = self._fake(n_fake, tau, rng, sampler)  # (N, K)
            # Non-saturating generator loss: -log D(G(z)).
            g_loss = F.softplus(-self.discriminator(fake)).mean()
            _clear_grads(self.generator)
            g_loss.backward(inputs=[self.generator.logits])  # D's gradients are not needed
            self.g_optimizer.step()
            self._bound_logits()
        return g_loss.detach(), d_loss.detach()

    def _fake(
        self,
        n_fake: int,
        tau: float | torch.Tensor,
        rng: torch.Generator | None,
        sampler: SoftSampler | None,
    ) -> torch.Tensor:
        if sampler is None:
            return self.generator(n_fake, self.estimator, tau, rng)  # (N, K)
        y_soft = sampler(self.generator.logits.expand(n_fake, -1), tau)  # (N, K)
        return straight_through(y_soft) if self.estimator.hard else y_soft

    @torch.no_grad()
    def _bound_logits(self) -> None:
        # In place and from a tensor maximum: no host read, so a graph can capture it.
        if self.config.logit_margin is not None:
            logits = self.generator.logits
            logits.clamp_(min=logits.max() - self.config.logit_margin)

    def _sample_st(
        self,
        n_fake: int,
        tau: float | torch.Tensor,
        rng: torch.Generator | None,
        sampler: SoftSampler | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Soft samples as ``(K, N)`` (a category's values of all fakes contiguous for small
        K), their categories and category frequencies, as the ``st`` estimator draws them
        (the same noise from the same generator)."""
        logits = self.generator.logits.detach()
        k = logits.numel()
        z = logits.expand(n_fake, -1)  # (N, K)
        if sampler is None:
            perturbed = (z + gumbel_noise_like(z, rng)) / tau  # (N, K)
            if k <= SHORT_ROWS_K:
                # Torch's CPU softmax and argmax along a last dimension of a few elements
                # are slow (one CPU thread, N=8192, K=5: softmax 1.3 ms on (N, K), 0.07 ms
                # on (K, N) plus 0.16 ms for the copy): a quarter of the whole step.
                y_t = perturbed.T.contiguous().softmax(0)  # (K, N)
                return y_t, *self._categories(_first_argmax_of_columns(y_t), logits, n_fake)
            y_t = perturbed.softmax(-1).T
        else:
            y_t = sampler(z, tau).T
        return y_t, *self._categories(y_t.T.argmax(-1), logits, n_fake)

    @staticmethod
    def _categories(idx: torch.Tensor, logits: torch.Tensor, n_fake: int
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(each fake's category (N,), the categories' frequencies (K,))."""
        # index_add_, not bincount: bincount reads its output size back from the device.
        ones = torch.ones_like(idx, dtype=logits.dtype)
        return idx, torch.zeros_like(logits).index_add_(0, idx, ones) / n_fake

    @torch.no_grad()
    def _step_st_logistic(
        self,
        real_weights: torch.Tensor,
        n_fake: int,
        tau: float | torch.Tensor,
        rng: torch.Generator | None,
        sampler: SoftSampler | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``train_step`` for straight-through samples and the logistic D, in closed form.

        A one-hot fake of category k gets D's logit ``w_k + b``, so D's loss and gradient
        depend on the fakes only through their category frequencies (or, with
        ``expected_fakes``, the generator's probabilities in their place). The generator's
        straight-through gradient is the soft samples' softmax backward of ``dL/dy_i =
        c_i w`` with ``c_i = -sigmoid(-(w_{k_i} + b)) / N``:
        ``dL/dlogits = sum_i c_i * y_i * (w - y_i . w) / tau``.
        """
        assert isinstance(self.discriminator, LogisticDiscriminator)  # checked by closed_form
        linear: nn.Linear = self.discriminator.linear
        s, k = self.config.label_smoothing, real_weights.numel()
        y_soft, idx, freq = self._sample_st(n_fake, tau, rng, sampler)
        # Discriminator: real inputs are (1 - s) e_k + s / K, without building that (K, K).
        w, b = linear.weight[0], linear.bias[0]  # (K,), ()
        d_real = (1.0 - s) * w + s * w.mean() + b  # (K,)
        d_cat = w + b  # (K,) D's logit of a one-hot fake of each category
        # The fakes' category weights in D's loss: expected or drawn (see expected_fakes).
        fake_weights = self.generator.logits.softmax(-1) if self.expected_fakes else freq
        d_loss = (real_weights * F.softplus(-d_real)).sum()
        d_loss = d_loss + (fake_weights * F.softplus(d_cat)).sum()
        g_real = -real_weights * torch.sigmoid(-d_real)  # (K,) dL/d d_real
        g_fake = fake_weights * torch.sigmoid(d_cat)  # (K,) dL/d d_cat
        grad_w = ((1.0 - s) * g_real + s / k * g_real.sum() + g_fake).unsqueeze(0)  # (1, K)
        _adam_step(self.d_optimizer, linear.weight, grad_w)
        _adam_step(self.d_optimizer, linear.bias, (g_real.sum() + g_fake.sum()).reshape(1))

        g_loss = d_loss
        for i in range(self.config.generator_steps):
            if i > 0:
                y_soft, idx, freq = self._sample_st(n_fake, tau, rng, sampler)
            w, b = linear.weight[0], linear.bias[0]  # D after its step
            d_cat = w + b
            g_loss = (freq * F.softplus(-d_cat)).sum()
            c = -torch.sigmoid(-d_cat)[idx] / n_fake  # (N,) dL/d(D's logit of fake i)
            dot = w @ y_soft  # (N,); y_soft is (K, N)
            grad = (c * y_soft * (w.unsqueeze(1) - dot)).sum(1) / tau  # (K,)
            _adam_step(self.g_optimizer, self.generator.logits, grad)
            self._bound_logits()
        return g_loss, d_loss
