"""``GraphedOnlineGAN``: an OnlineGAN's training step replayed as one CUDA graph per batch.

An eager GAN step launches about a hundred small kernels (sampling, two forward/backward
passes, two Adam steps, the EMA) and reads two losses back to the host, so at batch 1,024 it
is bound by launch latency. Here the whole step -- counting the batch, sampling the fakes, the
discriminator and generator steps, the reported EMA -- is captured once with static buffers
and replayed: per batch the host copies the values in, updates the temperature (and the EMA
weight) only when they change, and launches the graph. Nothing is read back unless asked.

The step is the one of :meth:`gumbel_core.gan.CategoricalGAN.step`, written with tensors where
the eager code has Python numbers (temperature, EMA weight, batch size) so that they can
change between replays. Supported estimators: ``st`` and ``soft`` (the Gumbel-softmax ones);
the others keep the eager path.

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
import torch.nn.functional as F

from gumbel_core._validation import check_values
from gumbel_core.gan import LogisticDiscriminator
from gumbel_core.online import OnlineGAN, StepStats

__all__ = ["GraphedOnlineGAN", "SUPPORTED_ESTIMATORS"]

SUPPORTED_ESTIMATORS = ("st", "soft")


class GraphedOnlineGAN:
    """Run ``learner``'s GAN steps for batches of exactly ``batch_size`` values as CUDA-graph
    replays (other batch sizes fall back to ``learner.learn_many``).

    Parameters
    ----------
    learner
        The :class:`OnlineGAN` to train; its weights, optimizers, schedule, EMA and counters
        are the ones updated. After ``learner.load_state_dict`` build a new wrapper (the
        optimizers' state tensors are replaced, and the graph would update the old ones).
    batch_size
        The batch size the graph is captured for.
    fused
        Sample with the fused Triton kernel (default: when it is available) or with PyTorch ops.
    capture
        ``False`` runs the same step eagerly without a graph (on any device): for tests and as
        a reference.
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
        gan = learner.gan
        k = learner.num_categories
        self._hard = gan.estimator.hard
        self._n_fake = gan.fake_batch_size(batch_size)
        if fused is None:
            from gumbel_core.kernels import fused_available

            fused = fused_available(gan.generator.logits)
        self.fused = bool(fused)

        # Static inputs and outputs of the step (the graph reads and writes these addresses).
        self._values = torch.zeros(batch_size, dtype=torch.long, device=device)  # (B,)
        self._counts = torch.zeros(k, device=device)  # (K,) this batch
        self._pending = torch.zeros(k, device=device)  # (K,) device batches not yet in baseline
        self._invalid = torch.zeros((), device=device)  # ids outside [0, K) seen on the device
        self._track = torch.zeros((), device=device)  # 1.0: the batch came as a device tensor
        self._tau = torch.ones(1, device=device)
        self._ema_weight = torch.ones((), device=device)  # 1 - decay
        self._g_loss = torch.zeros((), device=device)
        self._d_loss = torch.zeros((), device=device)
        self._host: dict[str, float] = {}
        self._ones = torch.ones(batch_size, device=device)
        if self.fused:
            from gumbel_core.kernels.fused import draw_seed

            self._seed = draw_seed(device, learner._rng)  # (seed, offset), advanced in-graph
            self._groups_per_sample = self._n_fake * ((k + 3) // 4)
        else:
            self._noise_rng = torch.Generator(device=device)
            self._noise_rng.manual_seed(
                int(
                    torch.randint(
                        0, 2**62, (1,), generator=learner._rng, device=learner._rng.device
                    )
                )
            )
        self._ema = learner._ema
        for opt in (gan.g_optimizer, gan.d_optimizer):
            _make_capturable(opt, device)
        self._graph: Any = None
        if capture:
            self._capture(warmup)

    # -- the step ------------------------------------------------------------------------

    def _sample(self) -> torch.Tensor:
        gan = self.learner.gan
        logits = gan.generator.logits.expand(self._n_fake, -1)  # (N, K)
        if self.fused:
            from gumbel_core.kernels.fused import fused_gumbel_softmax

            fake = fused_gumbel_softmax(logits, tau=self._tau, hard=self._hard, seed=self._seed)
            self._seed[1:].add_(self._groups_per_sample)  # fresh noise on the next call
            return fake
        u = torch.rand(logits.shape, generator=self._noise_rng, device=logits.device)
        info = torch.finfo(u.dtype)
        g = -torch.log(-torch.log(u.clamp_(min=info.tiny, max=1.0 - info.eps)))
        y_soft = torch.softmax((logits + g) / self._tau, dim=-1)  # (N, K)
        if not self._hard:
            return y_soft
        y_hard = torch.zeros_like(y_soft).scatter_(-1, y_soft.argmax(-1, keepdim=True), 1.0)
        # Straight-through: the value is y_hard, the gradient is that of y_soft.
        return y_hard - y_soft.detach() + y_soft

    def _d_real(self) -> torch.Tensor:
        """The discriminator on the K (smoothed) one-hot real inputs, ``(K,)``."""
        gan = self.learner.gan
        disc = gan.discriminator
        if isinstance(disc, LogisticDiscriminator):
            # D(e_k) = w_k + b: no (K, K) identity matrix, which matters for large K.
            w, b = disc.linear.weight[0], disc.linear.bias  # (K,), (1,)
            s = gan.config.label_smoothing
            return (1.0 - s) * w + (s / w.shape[0]) * w.sum() + b
        return disc(gan.real_inputs)

    def _step(self) -> None:
        gan = self.learner.gan
        k = self.learner.num_categories
        values = self._values
        valid = (values >= 0) & (values < k)  # (B,)
        self._counts.zero_().index_add_(0, values.clamp(0, k - 1), self._ones * valid)
        self._pending.add_(self._counts * self._track)
        self._invalid.add_((~valid).sum() * self._track)
        real_weights = self._counts / self._counts.sum()  # (K,)

        fake = self._sample()  # (N, K)
        d_fake = gan.discriminator(fake.detach())  # (N,)
        d_loss = (real_weights * F.softplus(-self._d_real())).sum() + F.softplus(d_fake).mean()
        gan.d_optimizer.zero_grad(set_to_none=True)
        d_loss.backward()
        gan.d_optimizer.step()
        g_loss = d_loss
        for i in range(gan.config.generator_steps):
            if i > 0:
                fake = self._sample()
            g_loss = F.softplus(-gan.discriminator(fake)).mean()
            gan.g_optimizer.zero_grad(set_to_none=True)
            g_loss.backward()
            gan.g_optimizer.step()
        self._g_loss.copy_(g_loss.detach())
        self._d_loss.copy_(d_loss.detach())
        probs = gan.generator.logits.detach().softmax(-1)  # (K,)
        self._ema.lerp_(probs, self._ema_weight)

    def _capture(self, warmup: int) -> None:
        saved = self._snapshot()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(max(1, warmup)):
                self._step()
        torch.cuda.current_stream().wait_stream(stream)
        self._restore(saved)
        self._graph = torch.cuda.CUDAGraph()
        if not self.fused:
            self._graph.register_generator_state(self._noise_rng)
        with torch.cuda.graph(self._graph):
            self._step()

    # -- warm-up bookkeeping ---------------------------------------------------------------

    def _snapshot(self) -> dict[str, Any]:
        gan = self.learner.gan
        return {
            "params": [p.detach().clone() for p in gan.parameters()],
            "opt": [_clone_state(opt) for opt in (gan.g_optimizer, gan.d_optimizer)],
            "tensors": [t.clone() for t in self._mutable()],
        }

    def _restore(self, saved: dict[str, Any]) -> None:
        gan = self.learner.gan
        with torch.no_grad():
            for p, v in zip(gan.parameters(), saved["params"], strict=True):
                p.copy_(v)
            for opt, state in zip((gan.g_optimizer, gan.d_optimizer), saved["opt"], strict=True):
                _restore_state(opt, state)
            for t, v in zip(self._mutable(), saved["tensors"], strict=True):
                t.copy_(v)

    def _mutable(self) -> list[torch.Tensor]:
        extra = [self._seed] if self.fused else []
        return [self._ema, self._pending, self._invalid, *extra]

    # -- the public verbs ------------------------------------------------------------------

    def learn_many(self, values: torch.Tensor) -> StepStats:
        """One GAN step on a batch of ``batch_size`` category ids (CPU or device tensor).

        CPU values are validated and counted into ``learner.baseline`` at once; device values
        are counted on the device and reach the baseline (and any invalid id its
        ``ValueError``) at :meth:`sync`. The losses in the returned stats are NaN (reading
        them would wait for the GPU); :meth:`losses` reads them.
        """
        learner = self.learner
        if (
            not isinstance(values, torch.Tensor)
            or values.dim() != 1
            or values.numel() != self.batch_size
        ):
            return learner.learn_many(values)
        if learner._ema is not self._ema:  # set_weights / load_state_dict replaced it
            self._ema.copy_(learner._ema)
            learner._ema = self._ema
        on_device = values.device == self._values.device and values.device.type != "cpu"
        if not on_device:
            check_values(values, learner.num_categories)
            learner.baseline.learn_many(values)
        self._set("track", self._track, 1.0 if on_device else 0.0)
        self._values.copy_(values)
        tau = learner.schedule.value
        step = learner.step + 1
        window = max(1.0, learner.config.ema_fraction * step)
        decay = min(learner.config.ema_decay, 1.0 - 1.0 / window)
        self._set("tau", self._tau, tau)
        self._set("ema_weight", self._ema_weight, 1.0 - decay)
        if self._graph is not None:
            self._graph.replay()
        else:
            self._step()
        learner.schedule.step()
        learner.step = step
        learner.samples_seen += self.batch_size
        nan = math.nan
        return StepStats(step, learner.samples_seen, tau, nan, nan, self.batch_size)

    def _set(self, name: str, tensor: torch.Tensor, value: float) -> None:
        # fill_ with a Python number launches a tiny kernel and never waits for the GPU.
        if self._host.get(name) != value:
            tensor.fill_(value)
            self._host[name] = value

    def losses(self) -> tuple[float, float]:
        """The last step's (generator loss, discriminator loss); waits for the GPU."""
        return float(self._g_loss), float(self._d_loss)

    def sync(self) -> None:
        """Add the device-side counts to ``learner.baseline``; raise ``ValueError`` if any
        device batch held an id outside ``[0, K)`` (those ids were left out of every count)."""
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
