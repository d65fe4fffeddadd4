"""``gpu``: the fused Gumbel-softmax against ``F.gumbel_softmax``, and the CUDA-graph GAN step
against the eager one, measured in the same run on the same GPU.

Every figure is a median over repetitions timed with CUDA events (kernels) or wall clock
around a synchronised loop (whole steps), after warm-up. Without CUDA it returns no results
and says why.
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["run_gpu_bench", "SOFTMAX_SHAPES"]

logger = logging.getLogger(__name__)

COMMAND = "gumbel-stream bench gpu"
SOFTMAX_SHAPES = ((1_048_576, 5), (65_536, 256), (4096, 32_768), (1024, 131_072))
HEADLINE_SHAPE = (4096, 32_768)

# Peak DRAM bandwidth (bytes/s) by device name, for the roofline fraction when the driver does
# not report clock and bus width. Datasheet figures.
_PEAK_BANDWIDTH = {"H100 SXM": 3.35e12, "H100 PCIe": 2.0e12, "H100 NVL": 3.9e12, "H200": 4.8e12}


def peak_bandwidth(props: Any) -> float | None:
    """Bytes/s of the device's DRAM: from clock and bus width when reported, else a table."""
    clock_khz = getattr(props, "memory_clock_rate", 0) or 0
    bus_bits = getattr(props, "memory_bus_width", 0) or 0
    if clock_khz and bus_bits:
        return 2.0 * clock_khz * 1e3 * bus_bits / 8.0  # double data rate
    for key, value in _PEAK_BANDWIDTH.items():
        if key.replace(" ", "").lower() in props.name.replace(" ", "").lower():
            return value
    return None


def _cuda_ms(fn: Callable[[], object], reps: int, warmup: int = 3) -> float:
    """Median milliseconds of one ``fn()`` call, timed with CUDA events."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def _wall_per_call(fn: Callable[[], object], calls: int, reps: int, warmup: int = 20) -> float:
    """Median seconds per call of ``fn`` over ``reps`` synchronised loops of ``calls`` calls."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        torch.cuda.synchronize()
        times.append((time.perf_counter() - start) / calls)
    return statistics.median(times)


def _result(name: str, value: float, baseline: float, unit: str, detail: str) -> dict[str, Any]:
    return {
        "name": name,
        "value": value,
        "baseline": baseline,
        "ratio": value / baseline if baseline else math.nan,
        "unit": unit,
        "command": COMMAND,
        "device": torch.cuda.get_device_name(),
        "detail": detail,
    }


# -- the fused Gumbel-softmax ---------------------------------------------------------------


def _softmax_case(
    shape: tuple[int, int], dtype: torch.dtype, mode: str, reps: int, peak: float | None
) -> dict[str, Any]:
    from gumbel_core.kernels.fused import fused_gumbel_softmax

    m, k = shape
    gen = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randn(shape, device="cuda", dtype=dtype, generator=gen)
    grad = torch.randn(shape, device="cuda", dtype=dtype, generator=gen)
    hard = mode != "soft"
    backward = mode == "st+bwd"
    if backward:
        x.requires_grad_()

    def run(sample: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[], None]:
        def call() -> None:
            y = sample(x)
            if backward:
                x.grad = None
                y.backward(grad)

        return call

    fused_ms = _cuda_ms(run(lambda t: fused_gumbel_softmax(t, tau=1.0, hard=hard)), reps)
    torch_ms = _cuda_ms(run(lambda t: F.gumbel_softmax(t, tau=1.0, hard=hard)), reps)
    # Bytes the fused kernels must move: read logits, write sample; backward also reads
    # logits and the incoming gradient and writes the logits' gradient.
    moved = (5 if backward else 2) * m * k * x.element_size()
    fused_bw, torch_bw = moved / (fused_ms * 1e-3), moved / (torch_ms * 1e-3)
    roof = f", {fused_bw / peak:.0%} of the {peak / 1e12:.2f} TB/s roofline" if peak else ""
    dt = str(dtype).replace("torch.", "")
    headline = shape == HEADLINE_SHAPE and dtype == torch.float32 and mode == "soft"
    name = "gpu_gumbel_softmax" if headline else f"gpu_gumbel_softmax_{mode}_{dt}_{m}x{k}"
    detail = (
        f"{mode} {dt} {m}x{k}: fused {fused_ms:.3f} ms vs F.gumbel_softmax {torch_ms:.3f} ms{roof}"
    )
    out = _result(name, fused_bw / 1e9, torch_bw / 1e9, "GB/s effective", detail)
    out["roofline_fraction"] = fused_bw / peak if peak else None
    return out


# -- the training step ----------------------------------------------------------------------


def _step_case(
    k: int, batch: int, steps: int, reps: int, name: str, unit: str = "steps/s"
) -> dict[str, Any]:
    from gumbel_core import OnlineGAN
    from gumbel_core.cuda_graphs import GraphedOnlineGAN

    gen = torch.Generator(device="cuda").manual_seed(1)
    values = torch.randint(0, k, (batch,), device="cuda", generator=gen)
    eager = OnlineGAN(k, seed=0, device="cuda")
    graphed = GraphedOnlineGAN(OnlineGAN(k, seed=0, device="cuda"), batch)
    eager_s = _wall_per_call(lambda: eager.learn_many(values), steps, reps, warmup=5)
    graph_s = _wall_per_call(lambda: graphed.learn_many(values), steps, reps, warmup=5)
    graphed.sync()
    scale = batch if unit == "samples/s" else 1
    detail = (
        f"K={k}, batch {batch}: CUDA graph {graph_s * 1e3:.3f} ms/step "
        f"({batch / graph_s / 1e6:.1f}M samples/s) vs eager OnlineGAN {eager_s * 1e3:.3f} ms/step"
    )
    return _result(name, scale / graph_s, scale / eager_s, unit, detail)


def _quality_case(k: int, batch: int, steps: int) -> dict[str, Any]:
    """1 - TV to the truth after ``steps`` batches from a Zipf(1.1) stream: graph vs eager."""
    from gumbel_core import OnlineGAN, total_variation
    from gumbel_core.cuda_graphs import GraphedOnlineGAN

    truth = 1.0 / torch.arange(1, k + 1, dtype=torch.float64) ** 1.1
    truth = (truth / truth.sum()).float()
    gen = torch.Generator(device="cuda").manual_seed(2)
    eager = OnlineGAN(k, seed=0, device="cuda")
    graphed = GraphedOnlineGAN(OnlineGAN(k, seed=0, device="cuda"), batch)
    truth_cuda = truth.cuda()
    for _ in range(steps):
        values = torch.multinomial(truth_cuda, batch, True, generator=gen)
        eager.learn_many(values)
        graphed.learn_many(values)
    graphed.sync()
    q_graph = 1.0 - total_variation(graphed.learner.estimate(), truth).item()
    q_eager = 1.0 - total_variation(eager.estimate(), truth).item()
    detail = f"K={k}, batch {batch}, {steps} steps, Zipf(1.1) stream: 1 - total variation"
    return _result(f"gpu_quality_k{k}", q_graph, q_eager, "1 - TV", detail)


def run_gpu_bench(quick: bool = False) -> list[dict[str, Any]]:
    """All GPU figures as dicts (``name, value, baseline, ratio, unit, command, device``, plus
    ``detail``); ``[]`` without CUDA."""
    if not torch.cuda.is_available():
        logger.warning("bench gpu: no CUDA device on this machine; nothing measured")
        return []
    from gumbel_core.kernels import triton_available

    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    peak = peak_bandwidth(props)
    results: list[dict[str, Any]] = []
    if triton_available():
        reps = 5 if quick else 20
        if quick:
            cases = [
                (HEADLINE_SHAPE, torch.float32, "soft"),
                (HEADLINE_SHAPE, torch.float32, "st+bwd"),
            ]
        else:
            cases = [
                (shape, dtype, mode)
                for shape in SOFTMAX_SHAPES
                for dtype in (torch.float32, torch.bfloat16)
                for mode in ("soft", "st", "st+bwd")
            ]
        for shape, dtype, mode in cases:
            results.append(_softmax_case(shape, dtype, mode, reps, peak))
            torch.cuda.empty_cache()
    else:
        logger.warning("bench gpu: Triton is not installed; the fused kernel is not measured")
    steps, reps = (50, 3) if quick else (200, 5)
    results.append(_step_case(5, 1024, steps, reps, "gpu_step"))
    results.append(_step_case(5, 1 << 20, max(10, steps // 10), reps, "gpu_step_1m", "samples/s"))
    if not quick:
        for k in (1024, 32_768):
            results.append(_step_case(k, 1024, steps // 2, reps, f"gpu_step_k{k}", "samples/s"))
            results.append(_quality_case(k, 1024, 2000))
    return results
