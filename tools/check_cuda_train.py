"""Device check: the Trainer on onnxruntime's CUDA provider against the CPU provider and torch CUDA.

Not a CI test (CI has no GPU): run it on a machine with an NVIDIA GPU, torch with CUDA and
``onnxruntime-gpu`` in place of ``onnxruntime``. For each model of ``bench_train.py`` (the digits
CNN and the 2-layer pre-LN encoder, same weights and batch) it

1. runs the first steps of the same training graph on the CPU and the CUDA provider from the same
   parameters and compares the losses and the parameters (they differ by float32 re-association
   only: cuDNN/cuBLAS kernels against MLAS);
2. checks that the carried values stay on the GPU (``OrtValue.device_name() == 'cuda'``);
3. times onnxruntime CUDA steps against torch CUDA eager (AdamW, same hyperparameters),
   alternating step by step, both synchronised, median of ``--steps``.

It exits 1 when the providers disagree beyond ``--tolerance``, 2 when CUDA is missing. Where
``onnxruntime-gpu`` comes as a wheel carried in pieces (the GPU machine of this workplace), put it
together first, for example::

    cat .whl/part-* > .whl/onnxruntime_gpu-1.31.1-cp312-cp312-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl
    python3 -m pip install -q --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD
    PYTHONUNBUFFERED=1 python3 tools/check_cuda_train.py --markdown $OUT/cuda.md

(``onnx``, ``onnx-ir`` and ``networkx`` travel the same way when the machine lacks them).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_train as bench  # noqa: E402

from _bench_common import markdown_table  # noqa: E402

from onnxsmith.train.trainer import PROVIDERS  # noqa: E402

CUDA = PROVIDERS["cuda"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30, help="timed steps per contender")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--agree-steps", type=int, default=3, help="steps compared between the providers")
    parser.add_argument("--tolerance", type=float, default=1e-3, help="allowed relative loss difference")
    parser.add_argument("--layers", type=int, default=2, help="transformer encoder blocks")
    parser.add_argument("--markdown", help="also write the tables to this file")
    parser.add_argument("--dry-run", action="store_true",
                        help="run every step on the CPU provider and torch CPU (checks the script without a GPU)")
    args = parser.parse_args(argv)

    import onnxruntime as ort
    import torch

    if hasattr(ort, "preload_dlls"):
        ort.preload_dlls()  # the CUDA and cuDNN libraries torch brought, for onnxruntime-gpu
    device = "cpu" if args.dry_run else "cuda"
    provider = PROVIDERS[device]
    if not args.dry_run and (CUDA not in ort.get_available_providers() or not torch.cuda.is_available()):
        print(f"no CUDA here: onnxruntime has {ort.get_available_providers()}, torch.cuda {torch.cuda.is_available()}")
        return 2
    name = "dry run on the CPU" if args.dry_run else torch.cuda.get_device_name(0)
    print(f"onnxruntime {ort.__version__}, torch {torch.__version__}, {name}")
    agreement_rows, timing_rows, failed = [], [], False
    for work in bench.workloads(args.layers):
        inference = bench.export(work.module, work.inputs, work.input_name, work.dynamic_batch)
        training = bench.training_graph(inference)
        feeds = {work.input_name: work.inputs, "labels": work.labels}
        loss_diff, param_diff, on_gpu = _providers_agree(training, feeds, args.agree_steps, provider, device)
        failed |= loss_diff > args.tolerance or not on_gpu
        agreement_rows.append([work.name, f"{loss_diff:.1e}", f"{param_diff:.1e}", "yes" if on_gpu else "NO"])
        ort_ms, torch_ms = _time_steps(work, training, feeds, args.steps, args.warmup, provider, device)
        timing_rows.append([work.name, f"{torch_ms:.2f}", f"{ort_ms:.2f}", f"{ort_ms / torch_ms:.2f}x"])
        print(agreement_rows[-1], timing_rows[-1], flush=True)
    tables = ("CPU against CUDA provider, first steps (largest relative difference):\n\n"
              + markdown_table(["model", "loss diff", "param diff", "values on the GPU"], agreement_rows)
              + "\n\nStep time (forward + backward + AdamW), median ms (ratio = onnxruntime CUDA / torch CUDA):\n\n"
              + markdown_table(["model", "torch CUDA", "ORT CUDA", "ratio"], timing_rows) + "\n")
    print(tables)
    if args.markdown:
        Path(args.markdown).write_text(tables)
    return 1 if failed else 0


def _providers_agree(training, feeds, steps: int, provider: str, device: str) -> tuple[float, float, bool]:
    """Largest relative loss and parameter differences between the CPU provider and ``provider``,
    and whether the latter's carried values live on ``device``."""
    cpu, gpu = bench.Trainer(training, provider=PROVIDERS["cpu"]), bench.Trainer(training, provider=provider)
    loss_diff = 0.0
    for i in range(steps):
        lr = bench.TIMING_LR * (1.0 + i)
        a, b = cpu.train_step(feeds, lr), gpu.train_step(feeds, lr)
        loss_diff = max(loss_diff, abs(a - b) / max(abs(a), 1e-12))
    expected, got = cpu.parameters(), gpu.parameters()
    param_diff = max(bench.relative(got[name], value) for name, value in expected.items())
    on_gpu = all(value.device_name().lower() == device for value in gpu.bound_values().values())
    return loss_diff, param_diff, on_gpu


def _time_steps(work, training, feeds, steps: int, warmup: int, provider: str, device: str) -> tuple[float, float]:
    """Median ms per step of onnxruntime on ``provider`` and torch eager on ``device``, alternating."""
    import torch

    ours = bench.Trainer(training, provider=provider)
    theirs = bench.TorchSteps(bench._copy(work.module).to(device))
    x, y = torch.from_numpy(work.inputs).to(device), torch.from_numpy(work.labels).to(device)

    def torch_step() -> None:
        theirs.step(x, y, bench.TIMING_LR)
        if device == "cuda":
            torch.cuda.synchronize()

    def ort_step() -> None:
        ours.train_step(feeds, bench.TIMING_LR)  # returns the loss on the host: synchronised

    runners = {"ort": ort_step, "torch": torch_step}
    for _ in range(warmup):
        for run in runners.values():
            run()
    times: dict[str, list[float]] = {name: [] for name in runners}
    names = list(runners)
    for i in range(steps):
        for name in names if i % 2 == 0 else names[::-1]:
            start = time.perf_counter()
            runners[name]()
            times[name].append((time.perf_counter() - start) * 1e3)
    return statistics.median(times["ort"]), statistics.median(times["torch"])


if __name__ == "__main__":
    sys.exit(main())
