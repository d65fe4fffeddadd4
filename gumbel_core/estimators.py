"""Categorical gradient estimators behind one interface: a sample in, gradients to the logits out.

Every estimator maps ``logits`` of shape ``(..., K)`` to a sample of the same shape whose forward
value is what a downstream model sees (a one-hot vector for the hard estimators, a point inside
the simplex for ``soft``) and whose backward pass defines the gradient estimate.
"""

from __future__ import annotations

import torch

from gumbel_core._validation import check_logits, check_tau
from gumbel_core.noise import exponential_noise
from gumbel_core.sampling import gumbel_max
from gumbel_core.softmax import gumbel_softmax, relaxed_sample

__all__ = [
    "CategoricalEstimator",
    "SoftGumbel",
    "StraightThroughGumbel",
    "ReinMax",
    "GumbelRao",
    "GappedStraightThrough",
    "ESTIMATORS",
    "get_estimator",
    "conditional_gumbel",
]


def _one_hot_sample(logits: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """An exact one-hot categorical sample (Gumbel-max), detached, in the logits' dtype."""
    index = gumbel_max(logits, generator=generator).unsqueeze(-1)  # (..., 1)
    return torch.zeros_like(logits).scatter_(-1, index, 1.0)  # (..., K)


class CategoricalEstimator:
    """Base class: ``estimator(logits, tau, generator)`` returns a sample carrying gradients.

    Attributes
    ----------
    name
        The registry name (``"st"``, ...).
    hard
        Whether the forward value is exactly one-hot.
    min_tau
        The smallest temperature the estimator accepts (``ReinMax`` needs ``tau >= 1``).
    """

    name: str = ""
    hard: bool = True
    min_tau: float = 0.0

    def __call__(
        self, logits: torch.Tensor, tau: float = 1.0, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        check_logits(logits)
        tau = check_tau(tau)
        if tau < self.min_tau:
            raise ValueError(f"estimator {self.name!r} needs tau >= {self.min_tau}, got {tau}")
        return self._sample(logits, tau, generator)

    def draw(
        self,
        logits: torch.Tensor,
        tau: float | torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """``estimator(logits, tau, generator)`` without checking the arguments, for callers
        that checked them once (the GAN's training step). ``soft`` and ``st`` also take a
        tensor ``tau`` without reading it back from the device."""
        return self._sample(logits, tau, generator)  # type: ignore[arg-type]

    def _sample(
        self, logits: torch.Tensor, tau: float, generator: torch.Generator | None
    ) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class _GumbelSoftmaxEstimator(CategoricalEstimator):
    """``gumbel_softmax(logits, tau, hard=self.hard)``: the shared body of ``soft`` and ``st``."""

    def _sample(
        self, logits: torch.Tensor, tau: float, generator: torch.Generator | None
    ) -> torch.Tensor:
        # A tensor tau (the GAN's step) skips gumbel_softmax's check, which reads it back.
        if isinstance(tau, torch.Tensor):
            return relaxed_sample(logits, tau, hard=self.hard, generator=generator)
        return gumbel_softmax(logits, tau=tau, hard=self.hard, generator=generator)


class SoftGumbel(_GumbelSoftmaxEstimator):
    """Relaxed samples ``softmax((logits + g) / tau)`` (Jang et al. 2017; the original post).

    The forward value is *not* one-hot, so a discriminator that compares it with one-hot real
    data can learn "one-hot means real"; see the quality benchmark.

    Examples
    --------
    >>> y = SoftGumbel()(torch.zeros(4, 3), tau=1.0, generator=torch.Generator().manual_seed(0))
    >>> bool(torch.allclose(y.sum(-1), torch.ones(4))), bool((y < 1).all())
    (True, True)
    """

    name = "soft"
    hard = False


class StraightThroughGumbel(_GumbelSoftmaxEstimator):
    """Straight-through Gumbel-softmax: one-hot forward, soft-sample gradient backward.

    Examples
    --------
    >>> y = StraightThroughGumbel()(torch.zeros(4, 3), generator=torch.Generator().manual_seed(0))
    >>> sorted(set(y.flatten().tolist()))
    [0.0, 1.0]
    """

    name = "st"
    hard = True


class ReinMax(CategoricalEstimator):
    """ReinMax (Liu et al. 2023): a second-order (Heun's method) straight-through estimator.

    The forward value is an exact one-hot sample ``D`` of ``softmax(logits)``; the gradient is
    that of ``2 * pi_1 - pi_0 / 2`` where ``pi_0 = softmax(logits)`` and
    ``pi_1 = (D + softmax(logits / tau)) / 2`` (differentiated as a softmax at ``pi_1``).
    Needs ``tau >= 1``.

    Examples
    --------
    >>> logits = torch.zeros(4, 3, requires_grad=True)
    >>> y = ReinMax()(logits, tau=1.0, generator=torch.Generator().manual_seed(0))
    >>> y.sum().item()
    4.0
    """

    name = "reinmax"
    min_tau = 1.0

    def _sample(
        self, logits: torch.Tensor, tau: float, generator: torch.Generator | None
    ) -> torch.Tensor:
        y_hard = _one_hot_sample(logits, generator)  # (..., K)
        pi_0 = logits.softmax(-1)
        pi_1 = 0.5 * (y_hard + (logits / tau).softmax(-1))
        # Value pi_1, Jacobian of softmax evaluated at pi_1 (the midpoint of Heun's method).
        log_pi_1 = pi_1.clamp_min(torch.finfo(pi_1.dtype).tiny).log()
        pi_1 = ((log_pi_1 - logits).detach() + logits).softmax(-1)
        pi_2 = 2.0 * pi_1 - 0.5 * pi_0
        return y_hard - pi_2.detach() + pi_2


def conditional_gumbel(
    logits: torch.Tensor,
    y_hard: torch.Tensor,
    num_samples: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Gumbel perturbations ``g`` such that ``argmax(logits + g)`` is the one-hot ``y_hard``.

    The maximum of ``logits + g`` is a Gumbel located at ``logsumexp(logits)``; every other
    coordinate is a Gumbel truncated below that maximum (Paulus et al. 2020, appendix).

    Returns
    -------
    torch.Tensor
        ``(num_samples, ..., K)`` noise (not the perturbed logits).

    Examples
    --------
    >>> logits = torch.tensor([0.0, 1.0, 2.0])
    >>> y = torch.tensor([1.0, 0.0, 0.0])
    >>> g = conditional_gumbel(logits, y, 100, torch.Generator().manual_seed(0))
    >>> bool(((logits + g).argmax(-1) == 0).all())
    True
    """
    work = logits.detach()
    shape = (num_samples, *work.shape)
    log_e = exponential_noise(shape, generator, work.device, work.dtype).log()  # (S, ..., K)
    log_z = work.logsumexp(-1, keepdim=True)  # (..., 1)
    log_e_top = (log_e * y_hard).sum(-1, keepdim=True)  # (S, ..., 1): the argmax's noise
    top = log_z - log_e_top  # the maximum, Gumbel(log Z)
    # Others: -log(exp(-gumbel_i) + exp(-top)), with gumbel_i = logits_i - log(E_i).
    others = -torch.logaddexp(log_e - work, -top)
    perturbed = torch.where(y_hard.bool(), top, others)
    return perturbed - work


class GumbelRao(CategoricalEstimator):
    """Gumbel-Rao (Paulus et al. 2020): straight-through with the soft sample averaged over
    ``num_samples`` Gumbel draws conditioned on the sampled category (lower variance).

    Examples
    --------
    >>> y = GumbelRao(4)(torch.zeros(2, 3), generator=torch.Generator().manual_seed(0))
    >>> y.sum(-1).tolist()
    [1.0, 1.0]
    """

    name = "rao"

    def __init__(self, num_samples: int = 8) -> None:
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples must be a positive int, got {num_samples!r}")
        self.num_samples = num_samples

    def _sample(
        self, logits: torch.Tensor, tau: float, generator: torch.Generator | None
    ) -> torch.Tensor:
        y_hard = _one_hot_sample(logits, generator)  # (..., K)
        noise = conditional_gumbel(logits, y_hard, self.num_samples, generator)  # (S, ..., K)
        y_soft = ((logits + noise) / tau).softmax(-1).mean(0)  # (..., K)
        return y_hard - y_soft.detach() + y_soft

    def __repr__(self) -> str:
        return f"GumbelRao(num_samples={self.num_samples})"


class GappedStraightThrough(CategoricalEstimator):
    """Gapped straight-through (Fan et al. 2022): a deterministic, resampling-free surrogate.

    Given the exact sample ``D``, the logits are perturbed (by a constant, so gradients are
    those of the logits) just enough that ``D`` leads every other category by ``gap``; the
    gradient is that of ``softmax(perturbed / tau)``. Two properties of ST Gumbel-softmax are
    kept (the argmax of the surrogate is ``D``; a margin of at least ``gap``) without its noise.

    Examples
    --------
    >>> y = GappedStraightThrough()(torch.zeros(2, 3), generator=torch.Generator().manual_seed(0))
    >>> y.sum(-1).tolist()
    [1.0, 1.0]
    """

    name = "gst"

    def __init__(self, gap: float = 1.0) -> None:
        if not gap > 0:
            raise ValueError(f"gap must be > 0, got {gap!r}")
        self.gap = float(gap)

    def _sample(
        self, logits: torch.Tensor, tau: float, generator: torch.Generator | None
    ) -> torch.Tensor:
        y_hard = _one_hot_sample(logits, generator)  # (..., K)
        work = logits.detach()
        chosen = (work * y_hard).sum(-1, keepdim=True)  # (..., 1)
        rival = work.masked_fill(y_hard.bool(), -torch.inf).amax(-1, keepdim=True)  # (..., 1)
        lift = (rival + self.gap - chosen).clamp_min(0.0) * y_hard  # (..., K), no gradient
        y_soft = ((logits + lift) / tau).softmax(-1)
        return y_hard - y_soft.detach() + y_soft

    def __repr__(self) -> str:
        return f"GappedStraightThrough(gap={self.gap})"


ESTIMATORS: dict[str, type[CategoricalEstimator]] = {
    "soft": SoftGumbel,
    "st": StraightThroughGumbel,
    "reinmax": ReinMax,
    "rao": GumbelRao,
    "gst": GappedStraightThrough,
}


def get_estimator(name: str, **options: object) -> CategoricalEstimator:
    """Build an estimator by name (``soft``, ``st``, ``reinmax``, ``rao``, ``gst``).

    Examples
    --------
    >>> get_estimator("rao", num_samples=4)
    GumbelRao(num_samples=4)
    """
    try:
        cls = ESTIMATORS[name]
    except KeyError:
        raise ValueError(
            f"unknown estimator {name!r}; choose one of {', '.join(ESTIMATORS)}"
        ) from None
    return cls(**options)  # type: ignore[arg-type]
