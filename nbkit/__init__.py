"""RFT Workbench helper package: every piece of logic the notebooks call.

Importing it pins the CPU math libraries to one code path before torch loads, so a seeded model build and
sampling give the same numbers on any x86-64 machine with AVX2 and with any number of threads: MKL in its
strict conditional numerical reproducibility mode (its matrix products no longer depend on the thread count
or the CPU model) and ATen's AVX2 kernels (instead of whatever the CPU offers). Measured: the tiny model's
build gave different weights with 1 and 2 threads and on AVX-512 vs AVX2 without these settings, identical
ones with them. Training (the warm start, GRPO) also needs torch's deterministic kernels, which
nbkit.policy.determinism turns on where it trains. NBKIT_FAST_MATH=1 opts out; variables already set are
left alone.

It also makes idle OpenMP threads sleep instead of spin (OMP_WAIT_POLICY=PASSIVE, unless set): on a shared
machine a spinning thread waits for a sibling that another process has descheduled, and the tiny model's
warm start measured 3-30x slower with 2 threads than with 1 (bench/demo.py --mode busy); passive threads
keep it at least as fast as one thread. The math is unchanged.
"""

import os
import platform

__version__ = "0.1.0"

REPRODUCIBLE_MATH = {"MKL_CBWR": "AVX2,STRICT", "ATEN_CPU_CAPABILITY": "avx2"}

if os.environ.get("NBKIT_FAST_MATH") != "1" and platform.machine().lower() in ("x86_64", "amd64"):
    for _name, _value in REPRODUCIBLE_MATH.items():
        os.environ.setdefault(_name, _value)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
