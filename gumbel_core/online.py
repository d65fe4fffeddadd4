"""``OnlineGAN``: learn a categorical distribution from a stream of batches with the GAN."""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from gumbel_core._validation import check_values
from gumbel_core.counting import CountingEstimator
from gumbel_core.gan import CategoricalGAN, GANConfig
from gumbel_core.schedules import TemperatureSchedule, default_schedule, make_schedule

__all__ = ["OnlineGAN", "StepStats", "average_states", "average_weights"]

_STATE_VERSION = 1


@dataclass(frozen=True)
class StepStats:
    """What one ``learn_many`` call did."""

    step: int
    samples_seen: int
    temperature: float
    generator_loss: float
    discriminator_loss: float
    batch_size: int


def _resolve_device(device: torch.device | str | None) -> torch.device:
    if device is None:
        return torch.device("cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} requested but CUDA is not available")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return device


class OnlineGAN:
    """Learn the distribution of a categorical stream online with a Gumbel-softmax GAN.

    Each ``learn_many`` call is one GAN step (one discriminator step, ``generator_steps``
    generator steps) on the batch. The reported :meth:`estimate` is an exponential moving
    average of ``softmax(logits)`` over recent steps, so it does not jitter with each step.
    A :class:`CountingEstimator` fed the same values is kept as ``baseline``.

    Parameters
    ----------
    num_categories
        ``K``; values are category ids in ``[0, K)``.
    estimator
        ``"soft"``, ``"st"``, ``"reinmax"``, ``"rao"`` or ``"gst"``.
    seed
        Seeds every random choice (initialisation and samples): same seed, same result.
    device
        ``None`` (CPU), ``"cpu"`` or ``"cuda"``.
    **options
        Any :class:`GANConfig` field, e.g. ``generator_lr=0.01``, ``discriminator="mlp"``.

    Examples
    --------
    >>> learner = OnlineGAN(num_categories=3, seed=0)
    >>> gen = torch.Generator().manual_seed(1)
    >>> truth = torch.tensor([0.2, 0.0, 0.8])
    >>> for _ in range(400):
    ...     stats = learner.learn_many(torch.multinomial(truth, 256, True, generator=gen))
    >>> stats.step, stats.samples_seen
    (400, 102400)
    >>> bool(total_variation(learner.estimate(), truth) < 0.03)
    True
    """

    def __init__(
        self,
        num_categories: int,
        estimator: str = "st",
        seed: int = 0,
        device: torch.device | str | None = None,
        **options: Any,
    ) -> None:
        fields = {f.name for f in dataclasses.fields(GANConfig)}
        unknown = sorted(set(options) - fields)
        if unknown:
            raise ValueError(
                f"unknown option(s) {', '.join(unknown)}; GANConfig has {sorted(fields)}"
            )
        self.config = GANConfig(num_categories=num_categories, estimator=estimator, **options)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed must be an int, got {seed!r}")
        self.seed = seed
        self.device = _resolve_device(device)
        self._rng = torch.Generator(device=self.device).manual_seed(seed)
        self.gan = CategoricalGAN(self.config, self._rng)
        self.schedule = self._make_schedule()
        if self.schedule.floor < self.gan.estimator.min_tau:
            raise ValueError(
                f"estimator {estimator!r} needs tau >= {self.gan.estimator.min_tau}, "
                f"but the schedule goes down to {self.schedule.floor}"
            )
        self.baseline = CountingEstimator(num_categories)
        self._ema = self.gan.generator.probabilities().clone()  # (K,)
        # Drift detection on the real data: a short average of the batches' frequencies
        # against the long one since the last restart of the reported estimate's averaging.
        k = self.num_categories
        self._recent = torch.zeros(k, dtype=torch.float64)  # (K,)
        self._long = torch.zeros(k, dtype=torch.float64)  # (K,)
        self._ema_since = 0  # the step at which the reported estimate's averaging restarted
        self.step = 0
        self.samples_seen = 0

    def _make_schedule(self) -> TemperatureSchedule:
        if self.config.schedule is None:
            return default_schedule(self.config.estimator)
        return make_schedule(self.config.schedule, **self.config.schedule_options)

    @property
    def num_categories(self) -> int:
        return self.config.num_categories

    @property
    def estimator(self) -> str:
        return self.config.estimator

    @property
    def temperature(self) -> float:
        """The current Gumbel-softmax temperature."""
        return self.schedule.value

    def learn_many(self, values: torch.Tensor) -> StepStats:
        """Learn from a 1-D LongTensor batch of category ids in ``[0, K)``.

        One GAN step per call; with the ``samples_per_step`` option, a larger batch is cut
        into consecutive pieces of at most that many values and each piece is one step, so
        how fast the estimate converges per sample does not depend on how values are batched.
        """
        check_values(values, self.num_categories)
        batch_size = int(values.numel())
        if batch_size == 0:
            raise ValueError("values is empty: a batch needs at least one value")
        k = self.num_categories
        chunk = self.config.samples_per_step
        pieces = [values] if chunk is None or batch_size <= chunk else list(values.split(chunk))
        total = torch.zeros(k, dtype=torch.float64)  # (K,) the whole batch, for the baseline
        tau, g_loss, d_loss = self.schedule.value, 0.0, 0.0
        for piece in pieces:
            counts = torch.bincount(
                piece, minlength=k
            )  # (K,): exact, the data enters D as one-hots
            counts_cpu = counts.to("cpu", torch.float64)
            total += counts_cpu
            self._watch_drift(counts_cpu)
            tau = self.schedule.value
            g_loss, d_loss = self.gan.step(counts.to(self.device, torch.float32), tau, self._rng)
            self.schedule.step()
            self.step += 1
            self._update_ema()
        # The baseline lives on the CPU; the values were checked above.
        self.baseline._add(total, batch_size)
        self.samples_seen += batch_size
        return StepStats(
            step=self.step,
            samples_seen=self.samples_seen,
            temperature=tau,
            generator_loss=g_loss,
            discriminator_loss=d_loss,
            batch_size=batch_size,
        )

    def count_many(self, values: torch.Tensor) -> None:
        """Count values in the baseline and ``samples_seen`` without a GAN step.

        For a stream that outruns the GAN: learn the GAN from a sample of a batch with
        :meth:`learn_many` and count the rest here, so the baseline still sees every value.

        Examples
        --------
        >>> learner = OnlineGAN(num_categories=3, seed=0)
        >>> learner.count_many(torch.tensor([0, 2, 2]))
        >>> learner.samples_seen, learner.step, learner.baseline.estimate().tolist()
        (3, 0, [0.3333333333333333, 0.0, 0.6666666666666666])
        """
        check_values(values, self.num_categories)
        counts = torch.bincount(values.to("cpu"), minlength=self.num_categories)  # (K,)
        self.baseline._add(counts.to(torch.float64), int(values.numel()))
        self.samples_seen += int(values.numel())

    def _watch_drift(self, counts: torch.Tensor) -> None:
        """Restart the reported estimate's averaging when the stream's distribution moved.

        ``counts`` are this step's ``(K,)`` category counts. The test compares a short
        average (``drift_window`` steps) with the long one since the last restart; it fires
        when their L1 distance exceeds ``drift_z`` times the sum of its binomial standard
        deviations, which sampling noise alone practically never reaches.
        """
        batch = float(counts.sum())
        freq = counts / batch  # (K,)
        since = self.step - self._ema_since + 1  # steps in the current window, this one too
        short = min(float(self.config.drift_window), float(since))
        self._recent.mul_(1.0 - 1.0 / short).add_(freq, alpha=1.0 / short)
        long_decay = min(self.config.ema_decay, 1.0 - 1.0 / since)
        self._long.mul_(long_decay).add_(freq, alpha=1.0 - long_decay)
        z = self.config.drift_z
        if z is None or since < 2 * self.config.drift_window:
            return
        p = 0.5 * (self._recent + self._long)
        # Variance of an EMA over W steps of batch frequencies: p(1-p) / (batch * (2W - 1)).
        sigma = (p * (1 - p) / (batch * (2 * self.config.drift_window - 1))).sqrt()
        if float((self._recent - self._long).abs().sum()) > z * float(sigma.sum()):
            self._ema_since = self.step  # the next _update_ema starts a fresh window
            self._long.copy_(self._recent)
            self.schedule.reheat()

    def _update_ema(self) -> None:
        # Early on average over the last ema_fraction of the steps (forgetting the start
        # quickly); later over about 1 / (1 - ema_decay) steps. Both count from the last
        # restart (the start, or a detected drift).
        window = max(1.0, self.config.ema_fraction * (self.step - self._ema_since))
        decay = min(self.config.ema_decay, 1.0 - 1.0 / window)
        probs = self.gan.generator.probabilities()
        self._ema.mul_(decay).add_(probs, alpha=1.0 - decay)

    def estimate(self) -> torch.Tensor:
        """The reported ``(K,)`` probabilities (on the CPU, float32, summing to 1)."""
        est = self._ema.detach().to("cpu", torch.float32)
        return est / est.sum()

    def generator_probabilities(self) -> torch.Tensor:
        """``softmax(logits)`` now, without averaging (jitters from step to step)."""
        return self.gan.generator.probabilities().to("cpu")

    def reheat(self) -> None:
        """Restart the temperature schedule (after a drift)."""
        self.schedule.reheat()

    # -- weights, for averaging replicas -------------------------------------------------

    def get_weights(self) -> dict[str, Any]:
        """The learned parameters (generator logits, discriminator, reported EMA), on the CPU."""
        return {
            "generator": {
                k: v.detach().cpu().clone() for k, v in self.gan.generator.state_dict().items()
            },
            "discriminator": {
                k: v.detach().cpu().clone() for k, v in self.gan.discriminator.state_dict().items()
            },
            "estimate_ema": self._ema.detach().cpu().clone(),
        }

    def set_weights(self, weights: dict[str, Any]) -> None:
        """Replace the parameters with ``weights`` (from :meth:`get_weights` or an average)."""
        self.gan.generator.load_state_dict(weights["generator"])
        self.gan.discriminator.load_state_dict(weights["discriminator"])
        ema = weights["estimate_ema"]
        if ema.shape != self._ema.shape:
            raise ValueError(
                f"estimate_ema has shape {tuple(ema.shape)}, expected {tuple(self._ema.shape)}"
            )
        self._ema = ema.to(self.device, self._ema.dtype).clone()

    # -- checkpointing ---------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bit-identically: model, optimizers, schedule, RNG,
        baseline, counters. Tensors are copies; the dict pickles with ``torch.save``."""
        return copy.deepcopy(
            {
                "version": _STATE_VERSION,
                "config": self.config.to_dict(),
                "seed": self.seed,
                "step": self.step,
                "samples_seen": self.samples_seen,
                "generator": self.gan.generator.state_dict(),
                "discriminator": self.gan.discriminator.state_dict(),
                "g_optimizer": self.gan.g_optimizer.state_dict(),
                "d_optimizer": self.gan.d_optimizer.state_dict(),
                "schedule": self.schedule.state_dict(),
                "rng": self._rng.get_state(),
                "estimate_ema": self._ema,
                "drift": {
                    "recent": self._recent,
                    "long": self._long,
                    "ema_since": self._ema_since,
                },
                "baseline": self.baseline.state_dict(),
            }
        )

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict` (configurations must match in ``K`` and estimator)."""
        if state.get("version") != _STATE_VERSION:
            raise ValueError(f"unsupported state version {state.get('version')!r}")
        config = state["config"]
        for name in ("num_categories", "estimator", "discriminator", "hidden_size"):
            if config[name] != getattr(self.config, name):
                mine = getattr(self.config, name)
                raise ValueError(f"state has {name}={config[name]!r}, this learner {mine!r}")
        state = copy.deepcopy(state)
        self.gan.generator.load_state_dict(state["generator"])
        self.gan.discriminator.load_state_dict(state["discriminator"])
        self.gan.g_optimizer.load_state_dict(state["g_optimizer"])
        self.gan.d_optimizer.load_state_dict(state["d_optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        self._rng.set_state(
            state["rng"].cpu() if isinstance(state["rng"], torch.Tensor) else state["rng"]
        )
        self._ema = state["estimate_ema"].to(self.device)
        drift = state["drift"]
        self._recent = drift["recent"].to(torch.float64).clone()
        self._long = drift["long"].to(torch.float64).clone()
        self._ema_since = int(drift["ema_since"])
        self.baseline.load_state_dict(state["baseline"])
        self.step = int(state["step"])
        self.samples_seen = int(state["samples_seen"])
        self.seed = int(state["seed"])

    def __getstate__(self) -> dict[str, Any]:
        return {
            "init": (self.num_categories, self.config.to_dict(), self.seed, str(self.device)),
            "state": self.state_dict(),
        }

    def __setstate__(self, pickled: dict[str, Any]) -> None:
        k, config, seed, device = pickled["init"]
        options = {n: v for n, v in config.items() if n not in ("num_categories", "estimator")}
        self.__init__(k, config["estimator"], seed, device, **options)  # type: ignore[misc]
        self.load_state_dict(pickled["state"])

    def __repr__(self) -> str:
        return (
            f"OnlineGAN(num_categories={self.num_categories}, estimator={self.estimator!r}, "
            f"seed={self.seed}, device={str(self.device)!r}, step={self.step})"
        )


def _mean(tensors: list[torch.Tensor]) -> torch.Tensor:
    first = tensors[0]
    if not first.is_floating_point():
        return first.clone()
    return torch.stack([t.to(first.device) for t in tensors]).mean(0).to(first.dtype)


def _average_tree(items: list[Any]) -> Any:
    first = items[0]
    if isinstance(first, torch.Tensor):
        return _mean(items)
    if isinstance(first, dict):
        return {k: _average_tree([it[k] for it in items]) for k in first}
    if isinstance(first, (list, tuple)):
        return type(first)(_average_tree(list(group)) for group in zip(*items, strict=True))
    return first


def average_weights(weights: list[dict[str, Any]]) -> dict[str, Any]:
    """The element-wise mean of several replicas' :meth:`OnlineGAN.get_weights`.

    Examples
    --------
    >>> a, b = OnlineGAN(3, seed=0), OnlineGAN(3, seed=1)
    >>> avg = average_weights([a.get_weights(), b.get_weights()])
    >>> a.set_weights(avg); b.set_weights(avg)
    >>> bool(torch.equal(a.estimate(), b.estimate()))
    True
    """
    if not weights:
        raise ValueError("average_weights needs at least one set of weights")
    return _average_tree(list(weights))


def average_states(states: list[dict[str, Any]]) -> dict[str, Any]:
    """Merge several replicas' :meth:`OnlineGAN.state_dict` into one.

    Model weights, optimizer moments and the reported EMA are averaged; the counting baselines
    are summed (they saw disjoint data) and so are ``samples_seen``; ``step`` is the largest;
    the schedule and RNG come from the first replica.
    """
    if not states:
        raise ValueError("average_states needs at least one state")
    first = states[0]
    for other in states[1:]:
        if other["config"]["num_categories"] != first["config"]["num_categories"]:
            raise ValueError("cannot average states with different num_categories")
    merged = copy.deepcopy(first)
    for key in (
        "generator",
        "discriminator",
        "estimate_ema",
        "g_optimizer",
        "d_optimizer",
        "drift",
    ):
        merged[key] = _average_tree([s[key] for s in states])
    merged["step"] = max(int(s["step"]) for s in states)
    merged["samples_seen"] = sum(int(s["samples_seen"]) for s in states)
    baseline = merged["baseline"]
    baseline["counts"] = torch.stack([s["baseline"]["counts"] for s in states]).sum(0)
    baseline["samples_seen"] = sum(int(s["baseline"]["samples_seen"]) for s in states)
    return merged
