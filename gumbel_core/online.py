"""``OnlineGAN``: learn a categorical distribution from a stream of batches with the GAN."""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from gumbel_core._validation import check_counts, check_values
from gumbel_core.counting import CountingEstimator
from gumbel_core.drift import DriftDetector
from gumbel_core.gan import CategoricalGAN, GANConfig, SoftSampler
from gumbel_core.schedules import TemperatureSchedule, default_schedule, make_schedule

__all__ = [
    "LearnerConfig",
    "OnlineGAN",
    "StepInputs",
    "StepStats",
]

_STATE_VERSION = 2


@dataclass
class LearnerConfig:
    """Settings of the online learner around the GAN (the GAN's own are :class:`GANConfig`).

    The defaults are the tuned configuration of ``docs/learner.md``.
    """

    samples_per_step: int | None = None  # None: one step per learn_many; else split big batches
    schedule: str | None = None  # None: the estimator's default (see schedules.default_schedule)
    schedule_options: dict[str, Any] = field(default_factory=dict)
    ema_decay: float = 0.9995  # the reported estimate: EMA of softmax(logits), at most this decay
    ema_fraction: float = 0.8  # ... and averaging over at most this fraction of past steps
    # ... of the steps since the last detected drift, until the stream has held still for
    # lr_decay_steps steps since it: drift_ema_fraction after a drift that followed a still
    # stretch (a switch, most likely to a new still stretch), moving_ema_fraction after one
    # that came before the stream had held still since the one before (or the start): a
    # stream that keeps changing (a slow ramp fires the detector again and again) is likely
    # still moving, so the average forgets faster (docs/learner.md, "Settling").
    drift_ema_fraction: float = 0.4
    moving_ema_fraction: float = 0.15
    # Drift detection (gumbel_core.drift.DriftDetector) on the real data's counts: the last
    # drift_window steps against the average since the last detection (at most
    # drift_long_window steps), threshold drift_z. drift_z=None switches detection off.
    drift_window: int = 16
    drift_z: float | None = 5.0
    drift_long_window: int = 500
    # The response to a detected drift: the reported average restarts, the temperature
    # schedule starts again from its hot end (reheat_on_drift), the replay below runs, and
    # the learning rates may be multiplied by these boosts, which fall linearly back to 1
    # over boost_steps steps. They are 1 (off) by default: with the replay, boosted rates
    # overshoot (docs/learner.md measured replay and boosts 1 as the best pair).
    reheat_on_drift: bool = True
    generator_lr_boost: float = 1.0
    discriminator_lr_boost: float = 1.0
    boost_steps: int = 250
    # A fresh learner has as far to go as one after a switch (from uniform to the stream), so
    # it starts with the drift response too: the replay, and the boosts if any
    # (docs/learner.md: on post, TV 0.0092 after 10,000 records with the replay, 0.0961
    # without).
    boost_at_start: bool = True
    # Replay: after a detected drift (and at the start, with boost_at_start) the learner keeps
    # the counts of the records since then, up to replay_records of them, and every step
    # trains replay_steps more D and G steps on that buffer. They are adversarial steps on
    # real records like any other, so the GAN fits the newest data in far fewer records
    # than one step per batch allows; the buffer holds only records after the detection.
    # It costs replay_steps more steps per step until replay_records are in (st, K=5, CPU:
    # 1.4 s once for the start's 10,000 records); replay_steps=0 switches it off.
    replay_steps: int = 100
    replay_records: int = 10_000
    # Settling: once a stream has held still for lr_decay_steps steps since the start or the
    # last detected drift, both learning rates fall as (lr_decay_steps / steps since) **
    # lr_decay_power, never below lr_decay_floor of the configured rates; a detection
    # restarts the count. With the rates falling the generator's iterates average the data
    # over ever more records, as counting does (Robbins-Monro), while the detector keeps a
    # change answerable at full rate; the reported average goes back to ema_fraction of the
    # steps since the detection. None switches it off (docs/learner.md: stationary mean TV
    # 1.04x counting with it, the longer average and the 11-nat margin, 1.33x before).
    lr_decay_steps: int | None = 200
    lr_decay_power: float = 0.5
    lr_decay_floor: float = 0.1

    def __post_init__(self) -> None:
        if self.drift_z is not None and not self.drift_z > 0:
            raise ValueError(f"drift_z must be None or > 0, got {self.drift_z!r}")
        for name in ("drift_window", "drift_long_window", "boost_steps", "replay_records"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        for name in ("generator_lr_boost", "discriminator_lr_boost"):
            if not getattr(self, name) >= 1.0:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if self.lr_decay_steps is not None and (
            isinstance(self.lr_decay_steps, bool)
            or not isinstance(self.lr_decay_steps, int)
            or self.lr_decay_steps < 1
        ):
            raise ValueError(
                f"lr_decay_steps must be None or an int >= 1, got {self.lr_decay_steps!r}"
            )
        if not 0.0 < self.lr_decay_power <= 1.0:
            raise ValueError(f"lr_decay_power must be in (0, 1], got {self.lr_decay_power!r}")
        if not 0.0 < self.lr_decay_floor <= 1.0:
            raise ValueError(f"lr_decay_floor must be in (0, 1], got {self.lr_decay_floor!r}")
        if isinstance(self.replay_steps, bool) or not isinstance(self.replay_steps, int) or (
            self.replay_steps < 0
        ):
            raise ValueError(f"replay_steps must be an int >= 0, got {self.replay_steps!r}")
        if self.samples_per_step is not None and not self.samples_per_step > 0:
            raise ValueError(f"samples_per_step must be None or > 0, got {self.samples_per_step!r}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay!r}")
        for name in ("ema_fraction", "drift_ema_fraction", "moving_ema_fraction"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in (0, 1], got {getattr(self, name)!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_GAN_FIELDS = frozenset(f.name for f in dataclasses.fields(GANConfig))
_LEARNER_FIELDS = frozenset(f.name for f in dataclasses.fields(LearnerConfig))


@dataclass(frozen=True)
class StepStats:
    """What one ``learn_many`` call did."""

    step: int
    samples_seen: int
    temperature: float
    generator_loss: float
    discriminator_loss: float
    batch_size: int


@dataclass(frozen=True)
class StepInputs:
    """The host-side numbers of the next training step (see :meth:`OnlineGAN.begin_step`)."""

    temperature: float
    average_weight: float  # weight of softmax(logits) in the reported average, 1 - decay
    generator_lr_scale: float
    discriminator_lr_scale: float


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

    Each training step takes one batch (or one ``samples_per_step`` piece of it) and does,
    in this order: count the batch; one discriminator step and ``generator_steps`` generator
    steps (:meth:`CategoricalGAN.train_step`); the reported average; the temperature
    schedule; the drift check, whose response (restart the reported average, re-heat the
    schedule, boost the learning rates) shapes the next steps. :meth:`learn_many` runs it
    eagerly; :class:`gumbel_core.cuda_graphs.GraphedOnlineGAN` captures the same device half
    (:meth:`device_step`) in a CUDA graph around the same host halves (:meth:`begin_step`,
    :meth:`end_step`).

    The reported :meth:`estimate` is an exponential moving average of ``softmax(logits)``
    over recent steps, so it does not jitter with each step. A :class:`CountingEstimator`
    fed the same values is kept as ``baseline``.

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
        Any :class:`GANConfig` or :class:`LearnerConfig` field, e.g. ``generator_lr=0.01``,
        ``discriminator="mlp"``, ``samples_per_step=256``, ``drift_z=None``.

    Examples
    --------
    >>> learner = OnlineGAN(num_categories=3, seed=0)
    >>> gen = torch.Generator().manual_seed(1)
    >>> truth = torch.tensor([0.2, 0.0, 0.8])
    >>> for _ in range(400):
    ...     stats = learner.learn_many(torch.multinomial(truth, 256, True, generator=gen))
    >>> stats.step, stats.samples_seen, learner.drift_detections
    (400, 102400, 0)
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
        unknown = sorted(set(options) - _GAN_FIELDS - _LEARNER_FIELDS)
        if unknown:
            raise ValueError(
                f"unknown option(s) {', '.join(unknown)}; GANConfig has {sorted(_GAN_FIELDS)}, "
                f"LearnerConfig has {sorted(_LEARNER_FIELDS)}"
            )
        gan_config = GANConfig(
            num_categories=num_categories,
            estimator=estimator,
            **{k: v for k, v in options.items() if k in _GAN_FIELDS},
        )
        self.config = LearnerConfig(**{k: v for k, v in options.items() if k in _LEARNER_FIELDS})
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed must be an int, got {seed!r}")
        self.seed = seed
        self.device = _resolve_device(device)
        self._rng = torch.Generator(device=self.device).manual_seed(seed)
        self.gan = CategoricalGAN(gan_config, self._rng)
        self.schedule = self._make_schedule()
        if self.schedule.floor < self.gan.estimator.min_tau:
            raise ValueError(
                f"estimator {estimator!r} needs tau >= {self.gan.estimator.min_tau}, "
                f"but the schedule goes down to {self.schedule.floor}"
            )
        self.baseline = CountingEstimator(num_categories)
        self._ema = self.gan.generator.probabilities().clone()  # (K,) the reported average
        self.detector = (
            None
            if self.config.drift_z is None
            else DriftDetector(
                num_categories,
                window=self.config.drift_window,
                z=self.config.drift_z,
                long_window=self.config.drift_long_window,
            )
        )
        self._average_since = 0  # the step at which the reported average (re)started
        # whether the last detection came before the stream had settled (see
        # drift_ema_fraction)
        self._moving = False
        # The step a learning-rate boost began (None: no boost running).
        self._boost_since: int | None = 0 if self.config.boost_at_start else None
        self._lr_scale = (1.0, 1.0)
        # (K,) counts of the records since the last detection (or the start) while replaying
        self._replay = torch.zeros(num_categories, dtype=torch.float64)
        self._replaying = self.config.replay_steps > 0 and self.config.boost_at_start
        self.step = 0
        self.samples_seen = 0

    def _make_schedule(self) -> TemperatureSchedule:
        if self.config.schedule is None:
            return default_schedule(self.estimator)
        return make_schedule(self.config.schedule, **self.config.schedule_options)

    @property
    def gan_config(self) -> GANConfig:
        """The GAN's hyperparameters (``self.config`` holds the learner's own)."""
        return self.gan.config

    @property
    def num_categories(self) -> int:
        return self.gan.config.num_categories

    @property
    def estimator(self) -> str:
        return self.gan.config.estimator

    @property
    def temperature(self) -> float:
        """The current Gumbel-softmax temperature: the schedule's value for the next step.

        It anneals from the schedule's hot start and starts again from it after a detected
        drift; ``schedule.steps`` counts the steps since that (re)start."""
        return self.schedule.value

    @property
    def drift_detections(self) -> int:
        """How many drifts the detector has found since the learner started (0 without one).

        Kept in :meth:`state_dict`, so it survives checkpoints."""
        return 0 if self.detector is None else self.detector.detections

    @property
    def rng(self) -> torch.Generator:
        """The generator every random draw of the learner comes from (part of the state)."""
        return self._rng

    # -- the training step -------------------------------------------------------------

    def learn_many(self, values: torch.Tensor) -> StepStats:
        """Learn from a 1-D LongTensor batch of category ids in ``[0, K)``.

        One training step per call; with the ``samples_per_step`` option, a larger batch is
        cut into consecutive pieces of at most that many values and each piece is one step,
        so how fast the estimate converges per sample does not depend on how values are
        batched.
        """
        check_values(values, self.num_categories)
        if values.numel() == 0:
            raise ValueError("values is empty: a batch needs at least one value")
        chunk = self.config.samples_per_step
        pieces = [values] if chunk is None or values.numel() <= chunk else values.split(chunk)
        # (n, K): exact counts of each piece, the only thing D sees of real data (one-hots)
        rows = torch.stack([torch.bincount(p, minlength=self.num_categories) for p in pieces])
        return self._learn_rows(rows.to("cpu", torch.float64))

    def learn_counts(self, counts: torch.Tensor) -> StepStats:
        """Learn from ``(n, K)`` per-category counts: one training step per row.

        A row is what one step of :meth:`learn_many` would count of its piece of values, so a
        caller that has only counts (a block of a stream, reduced where it was read) trains the
        same GAN. Rows that count nothing are skipped. The caller chooses the rows: a row per
        ``samples_per_step`` values steps as :meth:`learn_many` does; summing several rows into
        one makes fewer, larger steps (a learner that has fallen behind).

        Examples
        --------
        >>> learner = OnlineGAN(num_categories=3, seed=0)
        >>> stats = learner.learn_counts(torch.tensor([[1, 0, 3], [0, 0, 4], [0, 0, 0]]))
        >>> stats.step, stats.samples_seen, learner.baseline.counts.tolist()
        (2, 8, [1.0, 0.0, 7.0])
        """
        check_counts(counts, self.num_categories)
        rows = counts.to("cpu", torch.float64)  # (n, K)
        rows = rows[rows.sum(1) > 0]
        if rows.shape[0] == 0:
            raise ValueError("counts count nothing: a step needs at least one value")
        return self._learn_rows(rows)

    def _learn_rows(self, rows: torch.Tensor) -> StepStats:
        """One training step per row of ``rows`` (n, K) float64 counts on the CPU, none empty;
        the baseline counts them all."""
        tau = self.schedule.value
        g_loss = d_loss = torch.zeros(())
        for row in rows:  # (K,)
            tau, g_loss, d_loss = self.eager_step(row)
        total = rows.sum(0)  # (K,)
        batch_size = int(total.sum())
        self.baseline._add(total, batch_size)
        self.samples_seen += batch_size
        return StepStats(
            step=self.step,
            samples_seen=self.samples_seen,
            temperature=tau,
            generator_loss=float(g_loss),
            discriminator_loss=float(d_loss),
            batch_size=batch_size,
        )

    def count_counts(self, counts: torch.Tensor) -> None:
        """Count ``(n, K)`` per-category counts in the baseline and ``samples_seen`` without a
        GAN step: :meth:`count_many` for a caller that holds counts, not values."""
        check_counts(counts, self.num_categories)
        total = counts.to("cpu", torch.float64).sum(0)  # (K,)
        self.baseline._add(total, int(total.sum()))
        self.samples_seen += int(total.sum())

    def eager_step(self, counts: torch.Tensor) -> tuple[float, torch.Tensor, torch.Tensor]:
        """One whole training step on a step's ``(K,)`` float64 counts on the CPU (not empty):
        :meth:`begin_step`, :meth:`device_step`, :meth:`end_step`. The baseline and
        ``samples_seen`` are the caller's. Returns the step's temperature and the (generator,
        discriminator) losses as 0-d tensors."""
        inputs = self.begin_step()
        g_loss, d_loss = self.device_step(
            counts.to(self.device, torch.float32), int(counts.sum()), inputs.temperature,
            inputs.average_weight,
        )
        self.end_step(counts)
        return inputs.temperature, g_loss, d_loss

    def begin_step(self) -> StepInputs:
        """The host half before a step: set the learning rates (the drift response's boost
        and the settling factor) and return the temperature and the reported average's
        weight for the step."""
        scale = self._set_lr_scale()
        # Early on, and after a restart, average over the last ema_fraction of the steps
        # (forgetting the start quickly; after a drift, drift_ema_fraction or
        # moving_ema_fraction until settled); later over about 1 / (1 - ema_decay) steps.
        fraction = self.config.ema_fraction
        if self.drift_detections and not self._settling():
            fraction = (
                self.config.moving_ema_fraction if self._moving else self.config.drift_ema_fraction
            )
        window = max(1.0, fraction * (self.step + 1 - self._average_since))
        weight = 1.0 - min(self.config.ema_decay, 1.0 - 1.0 / window)
        return StepInputs(self.schedule.value, weight, *scale)

    def _set_lr_scale(self) -> tuple[float, float]:
        """Set the learning rates for the step: the boost after a drift, times the settling
        factor; return the (generator, discriminator) factors."""
        boost = 0.0
        if self._boost_since is not None:
            boost = 1.0 - (self.step - self._boost_since) / self.config.boost_steps
            if boost <= 0.0:
                boost, self._boost_since = 0.0, None
        settle = self._settling_scale()
        scale = (
            (1.0 + (self.config.generator_lr_boost - 1.0) * boost) * settle,
            (1.0 + (self.config.discriminator_lr_boost - 1.0) * boost) * settle,
        )
        if scale != self._lr_scale:
            self.gan.set_lr_scale(*scale)
            self._lr_scale = scale
        return scale

    def _settling(self) -> bool:
        """Whether the stream has held still for ``lr_decay_steps`` steps since the start or
        the last detected drift."""
        start = self.config.lr_decay_steps
        return start is not None and self.step - self._average_since > start

    def _settling_scale(self) -> float:
        """The learning rates' factor from ``lr_decay_steps`` (1 until settled or when off)."""
        start = self.config.lr_decay_steps
        held = self.step - self._average_since  # steps since the start or the last drift
        if start is None or held <= start:  # not _settling()
            return 1.0
        return max(self.config.lr_decay_floor, (start / held) ** self.config.lr_decay_power)

    def device_step(
        self,
        counts: torch.Tensor,
        batch_size: int,
        tau: float | torch.Tensor,
        average_weight: float | torch.Tensor,
        sampler: SoftSampler | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The device half of a step: the GAN's D and G steps on the batch's ``(K,)`` counts,
        then the reported average. Nothing here reads a number back from the device, so a
        CUDA graph can capture it with tensor ``tau`` and ``average_weight``. Returns the
        (generator, discriminator) losses as 0-d tensors."""
        losses = self.gan.train_step(
            counts, tau, self._rng, batch_size=batch_size, sampler=sampler
        )
        probs = self.gan.generator.logits.detach().softmax(-1)  # (K,)
        self._ema.lerp_(probs, average_weight)
        return losses

    def end_step(self, counts: torch.Tensor | None) -> None:
        """The host half after a step: advance the schedule and the step count, then check
        the step's ``(K,)`` counts for a drift (``None``: the caller checks them later with
        :meth:`check_drift`)."""
        self.schedule.step()
        self.step += 1
        if counts is not None:
            self.check_drift(counts)

    def check_drift(self, counts: torch.Tensor) -> bool:
        """Feed one step's ``(K,)`` counts to the drift detector; on a drift, respond: the
        reported average restarts, the schedule re-heats, the learning rates are boosted and
        the replay buffer restarts. Then, while replaying, the replay steps."""
        detected = self.detector is not None and self.detector.update(counts)
        if detected:
            self._moving = not self._settling()
            self._average_since = self.step
            self._boost_since = self.step
            if self.config.reheat_on_drift:
                self.schedule.reheat()
            self._replay.zero_()
            self._replaying = self.config.replay_steps > 0
            self._set_lr_scale()  # the replay below runs at the full (boosted) rates
        if self._replaying:
            self._replay_steps(counts)
        if detected and self.config.replay_steps:
            # The reported average restarts from the generator as the replay left it (the
            # step's own update above came before the replay).
            with torch.no_grad():
                self._ema.copy_(self.gan.generator.logits.detach().softmax(-1))
        return detected

    def _replay_steps(self, counts: torch.Tensor) -> None:
        """Add the step's counts to the replay buffer and train ``replay_steps`` D and G steps
        on the whole buffer; the buffer's last round once it holds ``replay_records``.

        Each replay step draws as many fakes as the step itself did, not as many as the
        buffer holds: up to 8,192 fakes a replay step made the replay 5-9x dearer (``rao``:
        58.6 s instead of 6.3 s for its first 12,800 records) for the same estimate (TV 0.0112
        and 0.0114 there; the drift rows settle at the same records, docs/learner.md)."""
        step_records = counts.detach().to("cpu", torch.float64)
        self._replay.add_(step_records)
        if int(self._replay.sum()) >= self.config.replay_records:
            self._replaying = False
        buffer = self._replay.to(self.device, torch.float32)
        tau = self.schedule.value
        fakes_of_the_step = max(1, int(step_records.sum()))
        for _ in range(self.config.replay_steps):
            self.gan.train_step(buffer, tau, self._rng, batch_size=fakes_of_the_step)

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

    def estimate(self) -> torch.Tensor:
        """The reported ``(K,)`` probabilities (on the CPU, float32, summing to 1)."""
        est = self._ema.detach().to("cpu", torch.float32)
        return est / est.sum()

    def generator_probabilities(self) -> torch.Tensor:
        """``softmax(logits)`` now, without averaging (jitters from step to step)."""
        return self.gan.generator.probabilities().to("cpu")

    def reheat(self) -> None:
        """Restart the temperature schedule from its hot end."""
        self.schedule.reheat()

    # -- weights ---------------------------------------------------------------------------

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
        """Replace the parameters with ``weights`` (from :meth:`get_weights`).

        Copied in place, so a captured CUDA graph keeps reading the same tensors."""
        ema = weights["estimate_ema"]
        if ema.shape != self._ema.shape:
            raise ValueError(
                f"estimate_ema has shape {tuple(ema.shape)}, expected {tuple(self._ema.shape)}"
            )
        self.gan.generator.load_state_dict(weights["generator"])
        self.gan.discriminator.load_state_dict(weights["discriminator"])
        with torch.no_grad():
            self._ema.copy_(ema)

    # -- checkpointing ---------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bit-identically: model, optimizers, schedule, RNG,
        reported average, drift detector and response, baseline, counters. Tensors are
        copies; the dict pickles with ``torch.save``. ``config`` is both configurations'
        fields in one flat dict."""
        return copy.deepcopy(
            {
                "version": _STATE_VERSION,
                "config": {**self.gan.config.to_dict(), **self.config.to_dict()},
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
                "detector": None if self.detector is None else self.detector.state_dict(),
                "drift_detections": self.drift_detections,
                "response": {
                    "average_since": self._average_since,
                    "moving": self._moving,
                    "boost_since": self._boost_since,
                    "replay": self._replay.clone(),
                    "replaying": self._replaying,
                },
                "baseline": self.baseline.state_dict(),
            }
        )

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict` (configurations must match in ``K`` and estimator).

        A version-1 state (before the drift detector had its own module) loads too."""
        version = state.get("version")
        if version not in (1, _STATE_VERSION):
            raise ValueError(f"unsupported state version {version!r}")
        config = state["config"]
        for name in ("num_categories", "estimator", "discriminator", "hidden_size"):
            mine = getattr(self.gan.config, name)
            if config[name] != mine:
                raise ValueError(f"state has {name}={config[name]!r}, this learner {mine!r}")
        state = copy.deepcopy(state)
        if version == 1:
            state = _upgrade_v1(state, self.num_categories)
        self.gan.generator.load_state_dict(state["generator"])
        self.gan.discriminator.load_state_dict(state["discriminator"])
        optimizers = (self.gan.g_optimizer, "g_optimizer"), (self.gan.d_optimizer, "d_optimizer")
        for optimizer, key in optimizers:
            optimizer.load_state_dict(state[key])
            for group in optimizer.param_groups:
                # A state saved by a graphed learner has device tensors and capturable=True
                # here; this learner may live elsewhere. begin_step sets the rates afresh.
                if isinstance(group["lr"], torch.Tensor):
                    group["lr"] = float(group["lr"])
                if self.device.type != "cuda" and group.get("capturable"):
                    group["capturable"] = False
        self._lr_scale = (float("nan"), float("nan"))
        self.schedule.load_state_dict(state["schedule"])
        self._rng.set_state(
            state["rng"].cpu() if isinstance(state["rng"], torch.Tensor) else state["rng"]
        )
        with torch.no_grad():
            self._ema.copy_(state["estimate_ema"])
        if self.detector is not None and state["detector"] is not None:
            self.detector.load_state_dict(state["detector"])
        response = state["response"]
        self._average_since = int(response["average_since"])
        self._moving = bool(response.get("moving", False))  # absent before the settling
        boost = response["boost_since"]
        self._boost_since = None if boost is None else int(boost)
        # states saved before replay existed: nothing buffered, not replaying
        self._replay = response.get("replay", torch.zeros(self.num_categories)).to(
            "cpu", torch.float64).clone()
        self._replaying = bool(response.get("replaying", False))
        self.baseline.load_state_dict(state["baseline"])
        self.step = int(state["step"])
        self.samples_seen = int(state["samples_seen"])
        self.seed = int(state["seed"])

    def __getstate__(self) -> dict[str, Any]:
        config = {**self.gan.config.to_dict(), **self.config.to_dict()}
        return {
            "init": (self.num_categories, config, self.seed, str(self.device)),
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


def _upgrade_v1(state: dict[str, Any], num_categories: int) -> dict[str, Any]:
    """A version-1 state in the version-2 layout (the detector's averages carry over)."""
    drift = state.pop("drift")
    since = int(drift["ema_since"])
    state["detector"] = {
        "num_categories": num_categories,
        "recent": drift["recent"],
        "long": drift["long"],
        "since": max(0, int(state["step"]) - since),
        "detections": 0,
    }
    state["response"] = {"average_since": since, "boost_since": None}
    return state
