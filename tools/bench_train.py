"""Benchmark: training on onnxruntime with build-gradients against PyTorch CPU eager.

Two measurements, both against torch 2.x CPU eager in the same process (dev-only: torch is not an
onnxsmith dependency):

* **Step time** (forward + backward + AdamW update) of the same architecture, weights and batch:

  - ``cnn``: the digits CNN of ``tools/zoo/cnn.py`` (stem, three residual stages, MaxPool, global
    average pooling, Gemm) at 1x32x32, batch 64, with every BatchNormalization folded into its
    Conv (so torch and ONNX train the very same parameters: Conv weights and biases);
  - ``transformer``: a pre-LN encoder (token + position embeddings, ``--layers`` blocks of 4-head
    self-attention and a GELU feed-forward, final LayerNormalization, mean over tokens, linear
    head to 10 classes), hidden 256, sequence 64, batch 16.

  Each torch module is exported by the TorchScript exporter (opset 17, eval mode), turned into a
  training graph by ``build-gradients{loss-fn=cross-entropy;optimizer=adamw}`` and run by
  ``onnxsmith.train.Trainer`` (onnxruntime CPU; parameters and optimizer state stay OrtValues
  bound with IOBinding, two buffer sets swapped each step); torch runs
  ``torch.optim.AdamW`` with the same hyperparameters. Before timing, the first three steps of
  both are compared (losses and parameters, relative to the largest element). Then, for each
  thread count (``torch.set_num_threads`` and ORT ``intra_op_num_threads``), the two contenders
  alternate step by step (order flipped every round) and the medians of the wall time and of the
  process CPU time per step are reported, with their ratio onnxruntime / torch.

* **Training from scratch on scikit-learn's digits** (``tools/zoo/cnn.py``'s data: 1,257 training
  and 540 held-out images upsampled to 32x32): the folded CNN, the same initial weights exported
  from torch, the same batches (seeded order, random shifts), AdamW with the same cosine learning
  rate schedule fed to both, the same epochs. Reported: the held-out accuracy of each (the
  onnxruntime model is evaluated by the *inference* model with the trained parameters written
  back by ``onnxsmith.train.write_back``),
  the agreement of their predictions, and the wall and CPU time each spent in training steps.

``--profile`` adds onnxruntime's per-node profile of the training graphs (1 thread): time per
phase (forward, backward, loss, optimizer, as named by build-gradients) and the ops that
dominate.

    nice /work/benchenv/bin/python tools/bench_train.py                  # everything
    nice /work/benchenv/bin/python tools/bench_train.py --quick          # smoke run (~1 min)
    nice /work/benchenv/bin/python tools/bench_train.py --only step --profile --markdown train.md

On a shared machine wall times drift; the interleaved CPU-time ratio is the steadier figure.
The script exits non-zero when the first steps disagree by more than ``--tolerance``.
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import math
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent / "zoo"))
from _bench_common import markdown_table, ratio  # noqa: E402
from cnn import DigitsNet, digits_images, split  # noqa: E402

from onnxsmith.passes.train import METADATA_KEY, BuildGradients  # noqa: E402
from onnxsmith.train import Trainer, write_back  # noqa: E402
from onnxsmith.train.trainer import session_graph  # noqa: E402

SEED = 0
OPSET = 17
CLASSES = 10
TIMING_LR = 1e-3
WEIGHT_DECAY = 0.01


# ------------------------------------------------------------------ models


def digits_cnn(seed: int = SEED) -> nn.Module:
    """The digits CNN with every BatchNormalization folded into its Conv (Conv with bias, then Relu).

    Each folded bias is re-drawn like a default Conv bias, so that no two parameters hold equal
    values: the TorchScript exporter merges equal initializers in eval mode, which would tie them.
    """
    torch.manual_seed(seed)
    model = DigitsNet().eval()
    for module in model.modules():
        for conv_name, bn_name in (("conv1", "bn1"), ("conv2", "bn2"), ("0", "1")):
            conv, bn = getattr(module, conv_name, None), getattr(module, bn_name, None)
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                folded = fuse_conv_bn_eval(conv, bn)
                bound = 1.0 / math.sqrt(conv.in_channels // conv.groups * math.prod(conv.kernel_size))
                nn.init.uniform_(folded.bias, -bound, bound)
                setattr(module, conv_name, folded)
                setattr(module, bn_name, nn.Identity())
    return model.requires_grad_(True)  # a folded bias that was absent before does not require grad


class EncoderBlock(nn.Module):
    """Pre-LN block: ``x + Attention(LN(x))`` then ``x + FF(LN(x))`` with a GELU feed-forward."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.out = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.ff1, self.ff2 = nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        q, k, v = self.qkv(self.ln1(x)).reshape(batch, tokens, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        attention = torch.softmax(q @ k.transpose(-1, -2) * (dim // self.heads) ** -0.5, dim=-1) @ v
        x = x + self.out(attention.transpose(1, 2).reshape(batch, tokens, dim))
        return x + self.ff2(F.gelu(self.ff1(self.ln2(x))))


class Encoder(nn.Module):
    """Token and position embeddings, ``layers`` pre-LN blocks, LayerNorm, mean over tokens, linear head."""

    def __init__(self, vocab: int, dim: int, heads: int, layers: int, tokens: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab, dim)
        self.position = nn.Parameter(torch.randn(tokens, dim) * 0.02)
        self.blocks = nn.ModuleList(EncoderBlock(dim, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, CLASSES)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.embedding(ids) + self.position
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x).mean(1))


def encoder(layers: int, seed: int = SEED, vocab: int = 1000, dim: int = 256, tokens: int = 64) -> nn.Module:
    """The encoder with LayerNorm scales and biases perturbed (distinct values: see :func:`digits_cnn`)."""
    torch.manual_seed(seed)
    model = Encoder(vocab, dim, 4, layers, tokens).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.LayerNorm):
                module.weight.add_(torch.randn_like(module.weight) * 0.02)
                module.bias.add_(torch.randn_like(module.bias) * 0.02)
    return model


@dataclass
class Workload:
    """A model, one batch of inputs and labels, and the names the exported model uses."""

    name: str
    module: nn.Module
    inputs: np.ndarray
    labels: np.ndarray
    input_name: str
    dynamic_batch: bool = False


def workloads(layers: int) -> list[Workload]:
    rng = np.random.default_rng(SEED)
    images = rng.random((64, 1, 32, 32), dtype=np.float32)
    ids = rng.integers(0, 1000, (16, 64)).astype(np.int64)
    return [
        Workload("cnn", digits_cnn(), images, rng.integers(0, CLASSES, 64).astype(np.int64), "image"),
        Workload(f"transformer ({layers} layers)", encoder(layers), ids,
                 rng.integers(0, CLASSES, 16).astype(np.int64), "ids"),
    ]


# ------------------------------------------------------------------ export and training graph


def export(module: nn.Module, sample: np.ndarray, input_name: str, dynamic_batch: bool) -> bytes:
    """TorchScript export (opset 17, eval mode); fails if the exporter tied two parameters together."""
    axes = {input_name: {0: "batch"}, "logits": {0: "batch"}} if dynamic_batch else None
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter is deliberate here
        torch.onnx.export(module, (torch.from_numpy(sample),), buffer, input_names=[input_name],
                          output_names=["logits"], dynamic_axes=axes, opset_version=OPSET, dynamo=False)
    proto = onnx.load_from_string(buffer.getvalue())
    initializers = {i.name for i in proto.graph.initializer}
    tied = [n.input[0] for n in proto.graph.node if n.op_type == "Identity" and n.input[0] in initializers]
    if tied:
        raise SystemExit(f"the exporter tied parameters to {tied}: give them distinct values")
    return buffer.getvalue()


def training_graph(inference: bytes, **options: object) -> ir.Model:
    """``build-gradients`` with cross-entropy over ``logits`` and AdamW (torch's defaults)."""
    model = ir.serde.deserialize_model(onnx.load_from_string(inference))
    BuildGradients(loss_fn=["cross-entropy"], optimizer="adamw", weight_decay=WEIGHT_DECAY, **options).run(model, None)
    return model


def session_options(threads: int, profile: str | None = None) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    if profile is not None:
        options.enable_profiling = True
        options.profile_file_prefix = profile
    return options


# ------------------------------------------------------------------ the two contenders


class TorchSteps:
    """torch eager: zero_grad, forward, cross-entropy, backward, AdamW step."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self.optimizer = torch.optim.AdamW(module.parameters(), lr=TIMING_LR, weight_decay=WEIGHT_DECAY)
        self.loss = torch.zeros(())

    def step(self, inputs: torch.Tensor, labels: torch.Tensor, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        self.loss = F.cross_entropy(self.module(inputs), labels)
        self.loss.backward()
        self.optimizer.step()

    def last_loss(self) -> float:
        return float(self.loss.detach())


def parameter_pairs(module: nn.Module, onnx_params: Mapping[str, np.ndarray]) -> dict[str, tuple[torch.Tensor, bool]]:
    """Each ONNX parameter's torch parameter, and whether the exporter stored it transposed.

    Names match where the exporter kept them; the weights of a Linear applied to 3-D inputs become
    pre-transposed MatMul initializers with new names, matched here by value.
    """
    torch_params = dict(module.named_parameters())
    pairs: dict[str, tuple[torch.Tensor, bool]] = {}
    for name, value in onnx_params.items():
        if name in torch_params and tuple(torch_params[name].shape) == value.shape:
            pairs[name] = (torch_params[name], False)
            continue
        for tensor in torch_params.values():
            data = tensor.detach().numpy()
            if data.ndim == 2 and data.T.shape == value.shape and np.array_equal(data.T, value):
                pairs[name] = (tensor, True)
                break
        else:
            raise SystemExit(f"no torch parameter matches the ONNX parameter '{name}'")
    return pairs


def relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-12))


# ------------------------------------------------------------------ step time


@dataclass
class Agreement:
    loss_difference: float
    parameter_difference: float
    losses: list[float]


def first_steps_agree(work: Workload, training: ir.Model, steps: int = 3) -> Agreement:
    """Runs ``steps`` steps of both from the same weights; largest relative differences."""
    module = _copy(work.module)
    ours = Trainer(training, threads=1)
    pairs = parameter_pairs(module, ours.parameters())
    theirs = TorchSteps(module)
    feeds = {work.input_name: work.inputs, "labels": work.labels}
    x, y = torch.from_numpy(work.inputs), torch.from_numpy(work.labels)
    loss_diff, losses = 0.0, []
    for i in range(steps):
        lr = TIMING_LR * (1.0 + i)  # a changing rate exercises the schedule input
        loss = ours.train_step(feeds, lr)
        theirs.step(x, y, lr)
        losses.append(theirs.last_loss())
        loss_diff = max(loss_diff, abs(loss - theirs.last_loss()) / abs(theirs.last_loss()))
    param_diff = 0.0
    for name, value in ours.parameters().items():
        tensor, transposed = pairs[name]
        reference = tensor.detach().numpy()
        param_diff = max(param_diff, relative(value, reference.T if transposed else reference))
    return Agreement(loss_diff, param_diff, losses)


def _copy(module: nn.Module) -> nn.Module:
    return copy.deepcopy(module)


@dataclass
class Timing:
    """Medians over the interleaved steps, in milliseconds."""

    torch_wall: float
    ort_wall: float
    torch_cpu: float
    ort_cpu: float


def time_steps(work: Workload, training: ir.Model, threads: int, steps: int, warmup: int) -> Timing:
    """Median wall and process CPU time per step, torch and onnxruntime alternating step by step."""
    torch.set_num_threads(threads)
    ours = Trainer(training, threads=threads)
    theirs = TorchSteps(_copy(work.module))
    feeds = {work.input_name: work.inputs, "labels": work.labels}
    x, y = torch.from_numpy(work.inputs), torch.from_numpy(work.labels)
    runners: dict[str, Callable[[], None]] = {"torch": lambda: theirs.step(x, y, TIMING_LR),
                                              "ort": lambda: ours.train_step(feeds, TIMING_LR)}
    for _ in range(warmup):
        for run in runners.values():
            run()
    wall: dict[str, list[float]] = defaultdict(list)
    cpu: dict[str, list[float]] = defaultdict(list)
    names = list(runners)
    for i in range(steps):
        for name in names if i % 2 == 0 else names[::-1]:
            start_wall, start_cpu = time.perf_counter(), time.process_time()
            runners[name]()
            cpu[name].append((time.process_time() - start_cpu) * 1e3)
            wall[name].append((time.perf_counter() - start_wall) * 1e3)
    median = statistics.median
    return Timing(median(wall["torch"]), median(wall["ort"]), median(cpu["torch"]), median(cpu["ort"]))


# ------------------------------------------------------------------ profile


def profile_steps(training: ir.Model, feeds: Mapping[str, np.ndarray], steps: int, top: int) -> dict[str, object]:
    """onnxruntime's node profile over ``steps`` steps (1 thread): totals per phase and per op.

    The session is the Trainer's (the graph it runs, blocked convolutions included, and the same
    optimization level) with profiling on; values are carried through numpy here, which changes no
    kernel's time.
    """
    info = json.loads(training.metadata_props[METADATA_KEY])
    carried = {name: training.graph.initializers[name].const_value.numpy() for name in info["parameters"]}
    carried.update({name: np.zeros_like(carried[p]) for name, p in info["state"].items()})
    with tempfile.TemporaryDirectory(prefix="bench-train-") as work:
        session = ort.InferenceSession(session_graph(training), session_options(1, os.path.join(work, "train")),
                                       providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        for step in range(steps + 2):
            hyper = {info["lr"]: np.array(TIMING_LR, np.float32), info["step"]: np.array(step, np.int64)}
            outputs = dict(zip(names, session.run(None, {**feeds, **carried, **hyper})))
            carried = {name: outputs[new] for name, new in info["updates"].items()}
        events = json.loads(Path(session.end_profiling()).read_text())
    phases: dict[str, float] = defaultdict(float)
    ops: dict[tuple[str, str], float] = defaultdict(float)
    for event in events:
        if event.get("cat") != "Node" or not event["name"].endswith("_kernel_time"):
            continue
        phase = _phase(event["name"][: -len("_kernel_time")])
        milliseconds = event["dur"] / 1e3 / (steps + 2)
        phases[phase] += milliseconds
        ops[(phase, event["args"].get("op_name", "?"))] += milliseconds
    ranked = sorted(ops.items(), key=lambda item: -item[1])[:top]
    return {"phases": dict(phases), "ops": [(phase, op, ms) for (phase, op), ms in ranked]}


def _phase(node: str) -> str:
    """The phase of a node, from build-gradients' naming (fused nodes keep their first node's name)."""
    if "_grad_" in node or node.startswith("grad_"):
        return "backward"
    if node.startswith("loss_"):
        return "loss"
    if "_adamw_" in node or node.startswith("lr_"):
        return "optimizer"
    return "forward"


# ------------------------------------------------------------------ digits from scratch


@dataclass
class DigitsResult:
    torch_accuracy: float
    ort_accuracy: float
    agreement: float
    torch_wall: float
    ort_wall: float
    torch_cpu: float
    ort_cpu: float
    torch_loss: float
    ort_loss: float


def train_digits(epochs: int, threads: int, seed: int = SEED, batch: int = 64, lr: float = 3e-3) -> DigitsResult:
    """Trains the folded digits CNN from the same initial weights in torch and in onnxruntime.

    ``seed`` draws the initial weights, the batch order and the shifts.
    """
    torch.set_num_threads(threads)
    images, labels = digits_images()
    train, test = split(len(labels))
    module = digits_cnn(seed)
    inference = export(module, images[:2], "image", dynamic_batch=True)
    ours = Trainer(training_graph(inference), threads=threads)
    theirs = TorchSteps(module.train())
    ort_loss = math.nan
    rng = np.random.default_rng(seed)
    total = epochs * -(-len(train) // batch)
    wall = {"torch": 0.0, "ort": 0.0}
    cpu = {"torch": 0.0, "ort": 0.0}
    step = 0
    for _ in range(epochs):
        order = train[rng.permutation(len(train))]
        for start in range(0, len(order), batch):
            index = order[start:start + batch]
            shift = tuple(int(s) for s in rng.integers(-2, 3, 2))
            x = np.ascontiguousarray(np.roll(images[index], shift, axis=(2, 3)))
            y = labels[index]
            rate = 0.5 * lr * (1.0 + math.cos(math.pi * step / total))
            contenders = {"torch": lambda: theirs.step(torch.from_numpy(x), torch.from_numpy(y), rate),
                          "ort": lambda: ours.train_step({"image": x, "labels": y}, rate)}
            for name in (("torch", "ort") if step % 2 == 0 else ("ort", "torch")):
                start_wall, start_cpu = time.perf_counter(), time.process_time()
                loss = contenders[name]()
                cpu[name] += time.process_time() - start_cpu
                wall[name] += time.perf_counter() - start_wall
                ort_loss = loss if name == "ort" else ort_loss
            step += 1
    with torch.no_grad():
        torch_predicted = module.eval()(torch.from_numpy(images[test])).argmax(1).numpy()
    trained = write_back(ir.serde.deserialize_model(onnx.load_from_string(inference)), ours.parameters())
    evaluation = ort.InferenceSession(ir.to_proto(trained).SerializeToString(), session_options(threads),
                                      providers=["CPUExecutionProvider"])
    ort_predicted = evaluation.run(None, {"image": images[test]})[0].argmax(1)
    return DigitsResult(float((torch_predicted == labels[test]).mean()), float((ort_predicted == labels[test]).mean()),
                        float((torch_predicted == ort_predicted).mean()), wall["torch"], wall["ort"],
                        cpu["torch"], cpu["ort"], theirs.last_loss(), ort_loss)


# ------------------------------------------------------------------ report


def environment() -> str:
    return (f"torch {torch.__version__}, onnxruntime {ort.__version__}, onnx {onnx.__version__}, "
            f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("step", "digits"), help="run one of the two measurements")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--steps", type=int, default=40, help="timed steps per contender")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--layers", type=int, default=2, help="transformer encoder blocks")
    parser.add_argument("--epochs", type=int, default=12, help="digits training epochs")
    parser.add_argument("--seeds", type=int, nargs="+", default=[SEED], help="digits runs, one per seed")
    parser.add_argument("--tolerance", type=float, default=1e-4, help="allowed relative loss difference")
    parser.add_argument("--profile", action="store_true", help="onnxruntime node profile of the training graphs")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 thread, few steps, 2 epochs")
    parser.add_argument("--markdown", type=Path, help="also write the tables to this file")
    args = parser.parse_args(argv)
    if args.quick:
        args.threads, args.steps, args.warmup, args.epochs = args.threads[:1], 5, 2, 2

    lines = [f"Environment: {environment()}.", ""]
    failed = False
    if args.only in (None, "step"):
        rows, agreement_rows, profiles = [], [], []
        for work in workloads(args.layers):
            inference = export(work.module, work.inputs, work.input_name, work.dynamic_batch)
            training = training_graph(inference)
            agreement = first_steps_agree(work, training)
            ok = agreement.loss_difference <= args.tolerance
            failed |= not ok
            agreement_rows.append([work.name, " / ".join(f"{v:.4f}" for v in agreement.losses),
                                   f"{agreement.loss_difference:.1e}", f"{agreement.parameter_difference:.1e}",
                                   "ok" if ok else "**FAIL**"])
            for threads in args.threads:
                t = time_steps(work, training, threads, args.steps, args.warmup)
                rows.append([work.name, str(threads), f"{t.torch_wall:.1f}", f"{t.ort_wall:.1f}",
                             ratio(t.ort_wall, t.torch_wall), f"{t.torch_cpu:.1f}", f"{t.ort_cpu:.1f}",
                             ratio(t.ort_cpu, t.torch_cpu)])
                print(" | ".join(rows[-1]), flush=True)
            if args.profile:
                profiles.append((work.name, profile_steps(training, {work.input_name: work.inputs,
                                                                     "labels": work.labels}, args.steps, 12)))
        lines += ["First three AdamW steps, onnxruntime against torch (largest relative difference):", "",
                  markdown_table(["model", "torch losses", "loss diff", "param diff", ""], agreement_rows), "",
                  f"Step time (forward + backward + AdamW), median of {args.steps} interleaved steps, ms "
                  "(ratio = onnxruntime / torch):", "",
                  markdown_table(["model", "threads", "torch wall", "ORT wall", "wall ratio", "torch CPU",
                                  "ORT CPU", "CPU ratio"], rows), ""]
        for name, profile in profiles:
            phases = profile["phases"]
            total = sum(phases.values())
            lines += [f"onnxruntime profile of the {name} step (1 thread, {total:.1f} ms of kernel time): "
                      + ", ".join(f"{p} {ms:.1f} ms ({ms / total:.0%})" for p, ms in
                                  sorted(phases.items(), key=lambda item: -item[1])), "",
                      markdown_table(["phase", "op", "ms per step", "share"],
                                     [[p, op, f"{ms:.2f}", f"{ms / total:.0%}"] for p, op, ms in profile["ops"]]), ""]
    if args.only in (None, "digits"):
        results = []
        for seed in args.seeds:
            result = train_digits(args.epochs, args.threads[0], seed)
            results.append(result)
            print(f"digits seed {seed}: torch {result.torch_accuracy:.2%}, onnxruntime {result.ort_accuracy:.2%}",
                  flush=True)
        rows = [[str(seed), f"{r.torch_accuracy:.2%}", f"{r.ort_accuracy:.2%}",
                 f"{(r.ort_accuracy - r.torch_accuracy) * 100:+.2f}", f"{r.agreement:.2%}",
                 f"{r.torch_loss:.4f} / {r.ort_loss:.4f}", f"{r.torch_wall:.1f} / {r.ort_wall:.1f}",
                 f"{r.torch_cpu:.1f} / {r.ort_cpu:.1f}"]
                for seed, r in zip(args.seeds, results)]
        torch_mean = statistics.mean(r.torch_accuracy for r in results)
        ort_mean = statistics.mean(r.ort_accuracy for r in results)
        lines += [f"Digits CNN from scratch: {args.epochs} epochs, batch 64, AdamW with a cosine schedule "
                  f"from 3e-3, {args.threads[0]} thread(s), the two interleaved step by step, one run per seed "
                  "(initial weights, batch order and shifts):", "",
                  markdown_table(["seed", "torch accuracy", "ORT accuracy", "difference (points)",
                                  "same prediction", "final batch loss torch / ORT",
                                  "training wall s torch / ORT", "training CPU s torch / ORT"], rows), "",
                  f"Mean held-out accuracy over {len(results)} seed(s): torch {torch_mean:.2%}, onnxruntime "
                  f"{ort_mean:.2%} ({(ort_mean - torch_mean) * 100:+.2f} points).", ""]
    report = "\n".join(lines)
    print(report)
    if args.markdown:
        args.markdown.write_text(report)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
