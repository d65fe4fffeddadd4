"""The Triton kernels compile for an H100 (sm_90) without spilling registers -- no GPU needed.

The interpreter (test_kernels.py) checks what the kernels compute but not that they compile:
this compiles the launch configurations ``fused.block_config`` picks, ahead of time, in a
subprocess (so the interpreter setting of other tests cannot leak in).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import os, subprocess, tempfile
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    from gumbel_core.kernels import _triton_gumbel as k
    from gumbel_core.kernels.fused import block_config

    cuobjdump = os.path.join(os.path.dirname(triton.__file__), "backends/nvidia/bin/cuobjdump")
    target = GPUTarget("cuda", 90, 32)

    def fwd_sig(dt, loop):
        sig = {"x_ptr": "*" + dt, "y_ptr": "*" + dt, "lse_ptr": "*fp32", "seed_ptr": "*i64",
               "tau_ptr": "*fp32", "tau": "fp32", "M": "i32", "K": "i32",
               "stride_xm": "i64", "stride_ym": "i64", "HARD": "constexpr",
               "SAVE_LSE": "constexpr", "TAU_FROM_PTR": "constexpr", "BLOCK_K": "constexpr"}
        if not loop:
            sig["ROWS"] = "constexpr"
        return sig

    def bwd_sig(dt, loop):
        sig = {"x_ptr": "*" + dt, "gy_ptr": "*" + dt, "dx_ptr": "*" + dt, "lse_ptr": "*fp32",
               "seed_ptr": "*i64", "tau_ptr": "*fp32", "tau": "fp32", "M": "i32", "K": "i32",
               "stride_xm": "i64", "stride_gm": "i64", "stride_dm": "i64",
               "TAU_FROM_PTR": "constexpr", "BLOCK_K": "constexpr"}
        if not loop:
            sig["ROWS"] = "constexpr"
        return sig

    def check(fn, sig, const, warps):
        c = triton.compile(ASTSource(fn, sig, const), target=target, options={"num_warps": warps})
        path = tempfile.mktemp(suffix=".cubin")
        with open(path, "wb") as f:
            f.write(c.asm["cubin"])
        usage = subprocess.run([cuobjdump, "--dump-resource-usage", path],
                               capture_output=True, text=True, check=True).stdout
        line = next(l for l in usage.splitlines() if "REG:" in l)
        assert "STACK:0 " in line, (fn.__name__, const, line)
        print(fn.__name__, const, warps, line.split()[0:2])

    for dt, (m, kk), hard in [("fp32", (1 << 20, 5), True), ("bf16", (65536, 256), False),
                               ("fp32", (4096, 8192), False), ("fp32", (4096, 32768), True),
                               ("bf16", (1024, 131072), False)]:
        cfg = block_config(m, kk)
        loop = cfg["loop"]
        const = {"HARD": hard, "SAVE_LSE": True, "TAU_FROM_PTR": hard, "BLOCK_K": cfg["BLOCK_K"]}
        bconst = {"TAU_FROM_PTR": hard, "BLOCK_K": cfg["BLOCK_K"]}
        if not loop:
            const["ROWS"] = bconst["ROWS"] = cfg["ROWS"]
        fwd = k.fwd_loop_kernel if loop else k.fwd_block_kernel
        bwd = k.bwd_loop_kernel if loop else k.bwd_block_kernel
        check(fwd, fwd_sig(dt, loop), const, cfg["num_warps"])
        check(bwd, bwd_sig(dt, loop), bconst, cfg["num_warps"])
    noise_sig = {"out_ptr": "*fp32", "seed_ptr": "*i64", "M": "i32", "K": "i32",
                 "ROWS": "constexpr", "BLOCK_K": "constexpr"}
    check(k.noise_kernel, noise_sig, {"ROWS": 1, "BLOCK_K": 1024}, 4)
    print("OK")
    """
)


@pytest.mark.slow
def test_kernels_compile_for_sm90_without_spills():
    triton = pytest.importorskip("triton")
    bindir = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin")
    if not os.path.exists(os.path.join(bindir, "cuobjdump")):
        pytest.skip("Triton's NVIDIA backend tools (ptxas, cuobjdump) are not installed")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=300
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip().endswith("OK")
