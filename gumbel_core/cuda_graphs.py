"""``GraphedOnlineGAN``: an OnlineGAN's training step replayed as one CUDA graph per step.

An eager GAN step launches about a hundred small kernels (sampling, the discriminator and
generator updates, the reported average) and reads two losses back to the host, so at batch
1,024 it is bound by launch latency. Here the device half of the learner's own step,
:meth:`OnlineGAN.device_step`, is captured once with static buffers and replayed; the host
halves around it are the learner's own too (:meth:`OnlineGAN.begin_step`: learning rates,
temperature, the reported average's weight; :meth:`OnlineGAN.end_step`: schedule, counters,
drift check). Per step the host copies the values in, updates the few tensors whose values
changed (temperature, average weight, learning rates) and launches the graph. Nothing is
read back unless asked.

Supported estimators: ``st`` and ``soft`` (the Gumbel-softmax ones); the others keep the eager
path. ``st`` with the logistic discriminator captures the closed-form step, the others the
autograd one.

Examples
--------
On a GPU::

    learner = OnlineGAN(num_categories=5, seed=0, device="cuda")
    graphed = GraphedOnlineGAN(learner, batch_size=1024)
    for batch in batches:                 # 1-D LongTensors of 1,024 ids, CPU or CUDA
        graphed.learn_many(batch)
    graphed.sync()                        # flush device-side counts into learner.baseline
    learner.estimate()
"""

from __future__ import annotations

import math
from typing import Any

import torch

from gumbel_core._validation import check_values
from gumbel_core.online import OnlineGAN, StepStats

__all__ = ["GraphedOnlineGAN", "SUPPORTED_ESTIMATORS"]

SUPPORTED_ESTIMATORS = ("st", "soft")


class GraphedOnlineGAN:
    """Run ``learner``'s training steps as CUDA-graph replays.

    A batch is cut into steps of ``samples_per_step`` values (the learner's option; the whole
    batch when it is ``None``), as :meth:`OnlineGAN.learn_many` cuts it; each step of the
    captured size is one replay, any other piece (and any batch that is not a 1-D tensor)
    takes the learner's eager path.

    Batches that come as CPU tensors are checked, counted into ``learner.baseline`` and
    checked for drift at once. Batches already on the device are counted there: they reach
    the baseline (and any invalid id its ``ValueError``) at :meth:`sync`, and the drift
    detector at the next call (one batch late: reading them at once would wait for the GPU).

    Parameters
    ----------
    learner
        The :class:`OnlineGAN` to train; its weights, optimizers, schedule, reported average,
        detector and counters are the ones updated. After ``learner.load_state_dict`` build
        a new wrapper, or load through :meth:`load_state_dict` here (the optimizers' state
        tensors are replaced, and the graph would update the old ones).
    batch_size
        The batch size the caller sends; the graph is captured for steps of
        ``min(batch_size, samples_per_step)`` values.
    fused
        Sample with the fused Triton kernel (default: only when switched on with
        ``GUMBEL_FUSED=1``, see :mod:`gumbel_core.kernels`). If it fails to compile or
        launch, the PyTorch sampler takes over after one warning.
    capture
        ``False`` runs the same step eagerly without a graph (on any device): for tests and
        as a reference.
    warmup
        Eager steps before capture (they compile kernels and allocate optimizer state; the
        learner's state is restored afterwards, so they leave no trace).
    """

    def __init__(
        self,
        learner: OnlineGAN,
        batch_size: int,
        fused: bool | None = None,
        capture: bool = True,
        warmup: int = 3,
    ) -> None:
        if learner.estimator not in SUPPORTED_ESTIMATORS:
            raise ValueError(
                f"GraphedOnlineGAN supports the estimators {SUPPORTED_ESTIMATORS}, "
                f"got {learner.estimator!r} (use learner.learn_many for it)"
            )
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        device = learner.device
        if capture and device.type != "cuda":
            raise ValueError(f"capture=True needs a CUDA learner, got device {str(device)!r}")
        self.learner = learner
        self.batch_size = batch_size
        self.capture = capture
        self.warmup = warmup
        chunk = learner.config.samples_per_step
        self.step_size = batch_size if chunk is None else min(batch_size, chunk)
        k = learner.num_categories
        if fused is None:
            from gumbel_core.kernels import fused_available

            fused = fused_available(learner.gan.generator.logits)
        self.fused = bool(fused)

        # Static inputs and outputs of the step (the graph reads and writes these addresses).
        self._values = torch.zeros(self.step_size, dtype=torch.long, device=device)  # (S,)
        self._ones = torch.ones(self.step_size, device=device)  # (S,)
        self._counts = torch.zeros(k, device=device)  # (K,) this step's data
        self._pending = torch.zeros(k, device=device)  # (K,) device steps not yet in baseline
        self._invalid = torch.zeros((), device=device)  # ids outside [0, K) seen on the device
        self._track = torch.zeros((), device=device)  # 1.0: the batch came as a device tensor
        self._tau = torch.ones(1, device=device)
        self._average_weight = torch.ones((), device=device)
        self._g_loss = torch.zeros((), device=device)
        self._d_loss = torch.zeros((), device=device)
        self._host: dict[str, float] = {}
        # Device steps' counts waiting for the drift detector: (rows on the device, copied).
        self._drift_rows: list[torch.Tensor] = []
        self._drift_copy: tuple[torch.Tensor, Any] | None = None
        self._seed = torch.zeros(2, dtype=torch.int64, device=device)
        if self.fused:
            from gumbel_core.kernels.fused import draw_seed

            self._seed.copy_(draw_seed(device, learner.rng))  # (seed, offset), advanced in-graph
        self._groups_per_sample = learner.gan.fake_batch_size(self.step_size) * ((k + 3) // 4)
        self._graph: Any = None
        if capture:
            learner.gan.use_tensor_learning_rates()
            for opt in (learner.gan.g_optimizer, learner.gan.d_optimizer):
                _make_capturable(opt, device)
            self._capture(warmup)

    # -- the step ------------------------------------------------------------------------

    def _sampler(self, logits: torch.Tensor, tau: float | torch.Tensor) -> torch.Tensor:
        """The fused kernel's soft sample; ``_fused_or_fallback`` guards the first calls."""
        from gumbel_core.kernels.fused import fused_gumbel_softmax

        # A copy of the seed: the backward pass re-derives the noise from the seed it saved.
        y = fused_gumbel_softmax(logits, tau=tau, hard=False, seed=self._seed.clone())
        self._seed[1:].add_(self._groups_per_sample)  # fresh noise on the next call
        return y

    def _step(self) -> None:
        """What the graph captures: count the step's values, then the learner's device step."""
        k = self.learner.num_categories
        values = self._values
        valid = (values >= 0) & (values < k)  # (S,)
        self._counts.zero_().index_add_(0, values.clamp(0, k - 1), self._ones * valid)
        self._pending.add_(self._counts * self._track)
        self._invalid.add_((~valid).sum() * self._track)
        g_loss, d_loss = self.learner.device_step(
            self._counts,
            self.step_size,
            self._tau,
            self._average_weight,
            sampler=self._sampler if self.fused else None,
        )
        self._g_loss.copy_(g_loss)
        self._d_loss.copy_(d_loss)

    def _step_or_fall_back(self) -> None:
        """An eager step; if the fused kernel fails, warn once and use the PyTorch sampler.

        The sampler is the first thing a step runs, so a failing kernel leaves no trace."""
        if not self.fused:
            self._step()
            return
        try:
            self._step()
        except Exception as error:  # a compile or launch error: Triton raises many kinds
            from gumbel_core.kernels import fused_failed

            fused_failed(error)
            self.fused = False
            self._step()

    def _capture(self, warmup: int) -> None:
        saved = self._snapshot()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(max(1, warmup)):
                self._step_or_fall_back()
        torch.cuda.current_stream().wait_stream(stream)
        self._restore(saved)
        self._graph = torch.cuda.CUDAGraph()
        if not self.fused:
            self._graph.register_generator_state(self.learner.rng)
        with torch.cuda.graph(self._graph):
            self._step()

    # -- warm-up bookkeeping ---------------------------------------------------------------

    def _snapshot(self) -> dict[str, Any]:
        gan = self.learner.gan
        return {
            "weights": self.learner.get_weights(),
            "opt": [_clone_state(opt) for opt in (gan.g_optimizer, gan.d_optimizer)],
            "rng": self.learner.rng.get_state(),
            "tensors": [t.clone() for t in (self._pending, self._invalid, self._seed)],
        }

    def _restore(self, saved: dict[str, Any]) -> None:
        gan = self.learner.gan
        with torch.no_grad():
            self.learner.set_weights(saved["weights"])  # in place
            for opt, state in zip((gan.g_optimizer, gan.d_optimizer), saved["opt"], strict=True):
                _restore_state(opt, state)
            tensors = (self._pending, self._invalid, self._seed)
            for t, v in zip(tensors, saved["tensors"], strict=True):
                t.copy_(v)
        self.learner.rng.set_state(saved["rng"])

    # -- the public verbs ------------------------------------------------------------------

    def learn_many(self, values: torch.Tensor) -> StepStats:
        """Learn from a batch of category ids (CPU or device tensor), one step per
        ``samples_per_step`` values as :meth:`OnlineGAN.learn_many` does.

        The losses in the returned stats are NaN (reading them would wait for the GPU);
        :meth:`losses` reads them.
        """
        learner = self.learner
        if not isinstance(values, torch.Tensor) or values.dim() != 1 or values.numel() == 0:
            return learner.learn_many(values)  # raises the learner's ValueError
        self._check_pending_drift()
        on_device = values.device == self._values.device and values.device.type != "cpu"
        if not on_device:
            check_values(values, learner.num_categories)
        self._set("track", self._track, 1.0 if on_device else 0.0)
        k = learner.num_categories
        total = torch.zeros(k, dtype=torch.float64)  # (K,) CPU batches, for the baseline
        tau = math.nan  # the first step's temperature
        for piece in values.split(self.step_size):
            counts: torch.Tensor | None
            if piece.numel() == self.step_size:
                step_tau, counts = self._graphed_step(piece, on_device)
            else:  # a remainder: the same step, uncaptured
                piece = piece.cpu()
                check_values(piece, k)
                counts = _counts_of(piece, k)
                step_tau = learner.eager_step(counts)[0]
            tau = step_tau if math.isnan(tau) else tau
            if counts is not None:
                total += counts
        if on_device:
            self._queue_pending_drift()
        if total.sum() > 0:
            learner.baseline.learn_counts(total)
        learner.samples_seen += int(values.numel())
        nan = math.nan
        return StepStats(learner.step, learner.samples_seen, tau, nan, nan, int(values.numel()))

    def _graphed_step(self, piece: torch.Tensor,
                      on_device: bool) -> tuple[float, torch.Tensor | None]:
        """One step of ``step_size`` values: the learner's host halves around a replay (or,
        with ``capture=False``, the captured body run eagerly). Returns the step's temperature
        and, for a CPU piece, its ``(K,)`` float64 counts (a device piece's are checked for
        drift at the next call)."""
        learner = self.learner
        inputs = learner.begin_step()
        self._set("tau", self._tau, inputs.temperature)
        self._set("average_weight", self._average_weight, inputs.average_weight)
        self._values.copy_(piece, non_blocking=True)
        if self._graph is not None:
            self._graph.replay()
        else:
            self._step_or_fall_back()
        if on_device:
            learner.end_step(None)
            self._drift_rows.append(self._counts.clone())
            return inputs.temperature, None
        counts = _counts_of(piece, learner.num_categories)
        learner.end_step(counts)
        return inputs.temperature, counts

    def _queue_pending_drift(self) -> None:
        rows = torch.stack(self._drift_rows)  # (steps, K) on the device
        self._drift_rows = []
        pinned = rows.device.type == "cuda"
        host = torch.empty(rows.shape, dtype=rows.dtype, pin_memory=pinned)
        host.copy_(rows, non_blocking=pinned)
        event = torch.cuda.Event() if pinned else None
        if event is not None:
            event.record()
        self._drift_copy = (host, event)

    def _check_pending_drift(self) -> None:
        if self._drift_copy is None:
            return
        host, event = self._drift_copy
        self._drift_copy = None
        if event is not None:
            event.synchronize()
        for row in host.to(torch.float64):
            if row.sum() > 0:  # a step of only invalid ids has no counts (sync raises)
                self.learner.check_drift(row)

    def _set(self, name: str, tensor: torch.Tensor, value: float) -> None:
        # fill_ with a Python number launches a tiny kernel and never waits for the GPU.
        if self._host.get(name) != value:
            tensor.fill_(value)
            self._host[name] = value

    def estimate(self) -> torch.Tensor:
        """The learner's reported estimate, :meth:`OnlineGAN.estimate`."""
        return self.learner.estimate()

    def losses(self) -> tuple[float, float]:
        """The last step's (generator loss, discriminator loss); waits for the GPU."""
        return float(self._g_loss), float(self._d_loss)

    def sync(self) -> None:
        """Add the device-side counts to ``learner.baseline`` and check the device batches for
        drift; raise ``ValueError`` if any device batch held an id outside ``[0, K)`` (those
        ids were left out of every count)."""
        self._check_pending_drift()
        pending = self._pending.to("cpu", torch.float64)
        invalid = int(self._invalid)
        self._pending.zero_()
        self._invalid.zero_()
        if pending.sum() > 0:
            self.learner.baseline.learn_counts(pending)
        if invalid:
            raise ValueError(
                f"{invalid} value(s) outside [0, {self.learner.num_categories}) in device batches"
            )

    # -- state -------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The learner's :meth:`OnlineGAN.state_dict` (after :meth:`sync`) and the fused
        sampler's seed: everything needed to continue bit-identically."""
        self.sync()
        return {"learner": self.learner.state_dict(), "fused_seed": self._seed.cpu().clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict`, and capture the graph again (the optimizers' state
        tensors are new)."""
        self.sync()
        self.learner.load_state_dict(state["learner"])
        self._seed.copy_(state["fused_seed"])
        self._host.clear()
        if self.capture:
            self.learner.gan.use_tensor_learning_rates()
            for opt in (self.learner.gan.g_optimizer, self.learner.gan.d_optimizer):
                _make_capturable(opt, self.learner.device)
            self._capture(self.warmup)

    def __getstate__(self) -> dict[str, Any]:
        return {
            "init": (self.batch_size, self.fused, self.capture, self.warmup),
            "learner": self.learner,
            "state": self.state_dict(),
        }

    def __setstate__(self, pickled: dict[str, Any]) -> None:
        batch_size, fused, capture, warmup = pickled["init"]
        self.__init__(pickled["learner"], batch_size, fused, capture, warmup)  # type: ignore[misc]
        self.load_state_dict(pickled["state"])

    def __repr__(self) -> str:
        return (
            f"GraphedOnlineGAN({self.learner!r}, batch_size={self.batch_size}, "
            f"fused={self.fused}, capture={self.capture})"
        )


def _counts_of(piece: torch.Tensor, num_categories: int) -> torch.Tensor:
    """The ``(K,)`` float64 counts of a CPU piece of checked ids."""
    return torch.bincount(piece, minlength=num_categories).to(torch.float64)


def _make_capturable(opt: torch.optim.Optimizer, device: torch.device) -> None:
    """Adam keeps its step count on the device when ``capturable`` (required inside a graph)."""
    for group in opt.param_groups:
        if "capturable" in group and device.type == "cuda":
            group["capturable"] = True
    for state in opt.state.values():
        step = state.get("step")
        if isinstance(step, torch.Tensor) and step.device != device and device.type == "cuda":
            state["step"] = step.to(device=device, dtype=torch.float32)


def _clone_state(opt: torch.optim.Optimizer) -> list[dict[str, torch.Tensor] | None]:
    out: list[dict[str, torch.Tensor] | None] = []
    for group in opt.param_groups:
        for p in group["params"]:
            state = opt.state.get(p)
            out.append({k: v.clone() for k, v in state.items()} if state else None)
    return out


def _restore_state(opt: torch.optim.Optimizer, saved: list[dict[str, torch.Tensor] | None]) -> None:
    # In place: the graph holds these tensors' addresses. A parameter without state before
    # the warm-up gets zeroed moments and step 0, which is exactly a fresh Adam.
    params = [p for group in opt.param_groups for p in group["params"]]
    for p, old in zip(params, saved, strict=True):
        state = opt.state.get(p, {})
        for key, value in state.items():
            if not isinstance(value, torch.Tensor):
                continue
            if old is None or key not in old:
                value.zero_()
            else:
                value.copy_(old[key])
