"""Compare the losses and optimizer steps of build-gradients with torch on a small MLP.

Dev-only check (torch is not a dependency of onnxsmith), a sibling of ``gradcheck_torch.py``::

    PYTHONPATH=. /work/benchenv/bin/python tools/optimcheck_torch.py

For each loss (cross-entropy with label smoothing, mse, cosine, kl-div with temperature from
teacher logits and from probabilities, and a weighted sum) and each optimizer (SGD plain, with
momentum and weight decay, Nesterov; AdamW), the same float32 MLP is trained for 5 steps with a
changing learning rate by the ONNX training graph in onnxruntime and by torch.optim. Losses and
parameters are compared after every step (relative to the largest element); the script exits
non-zero if any differ by more than 1e-4.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import torch
import torch.nn.functional as F

from onnxsmith.ir.builder import GraphBuilder
from onnxsmith.passes.train import METADATA_KEY, BuildGradients
from onnxsmith.verify._session import make_session

F32 = "float32"
STEPS, LRS = 5, [0.05, 0.04, 0.03, 0.02, 0.01]
TOLERANCE = 1e-4


def mlp(params: dict[str, np.ndarray]):
    b = GraphBuilder(opset=18)
    x = b.input("x", F32, ["N", 6])
    v = {k: b.initializer(k, a) for k, a in params.items()}
    h = b.Tanh(b.Add(b.MatMul(x, v["w1"]), v["b1"]))
    b.output(b.Add(b.MatMul(h, v["w2"]), v["b2"]), "logits")
    return b.build()


def torch_mlp(t: dict[str, torch.Tensor], x: np.ndarray) -> torch.Tensor:
    return torch.tanh(torch.tensor(x) @ t["w1"] + t["b1"]) @ t["w2"] + t["b2"]


def torch_loss(kind: str, logits: torch.Tensor, feeds: dict[str, np.ndarray]) -> torch.Tensor:
    if kind == "cross-entropy":
        return F.cross_entropy(logits, torch.tensor(feeds["labels"]), label_smoothing=0.1)
    if kind == "mse":
        return F.mse_loss(logits, torch.tensor(feeds["target"]))
    if kind == "cosine":
        return (1 - F.cosine_similarity(logits, torch.tensor(feeds["target"]), dim=-1)).mean()
    teacher = torch.tensor(feeds.get("teacher_logits", np.log(feeds.get("teacher_probs", 1.0))))
    kl = F.kl_div(F.log_softmax(logits / 3, -1), F.log_softmax(teacher / 3, -1), log_target=True,
                  reduction="batchmean") * 9
    if kind == "kl-div":
        return kl
    return 0.5 * F.cross_entropy(logits, torch.tensor(feeds["labels"])) + 2.0 * kl  # the weighted sum


LOSSES = {  # name -> build-gradients options
    "cross-entropy": {"loss_fn": "cross-entropy", "label_smoothing": 0.1},
    "mse": {"loss_fn": "mse"},
    "cosine": {"loss_fn": "cosine"},
    "kl-div": {"loss_fn": "kl-div", "temperature": 3.0},
    "kl-div-probs": {"loss_fn": "kl-div", "temperature": 3.0, "teacher": "probs"},
    "weighted": {"loss_fn": "cross-entropy,kl-div", "loss_weights": "0.5,2", "temperature": 3.0},
}

OPTIMIZERS = {  # name -> (build-gradients options, torch optimizer factory)
    "sgd": ({"optimizer": "sgd"}, lambda p: torch.optim.SGD(p, lr=1.0)),
    "sgd-momentum-decay": ({"optimizer": "sgd", "momentum": 0.9, "weight_decay": 0.01},
                           lambda p: torch.optim.SGD(p, lr=1.0, momentum=0.9, weight_decay=0.01)),
    "sgd-nesterov": ({"optimizer": "sgd", "momentum": 0.9, "nesterov": True},
                     lambda p: torch.optim.SGD(p, lr=1.0, momentum=0.9, nesterov=True)),
    "adamw": ({"optimizer": "adamw"}, lambda p: torch.optim.AdamW(p, lr=1.0)),
    "adamw-custom": ({"optimizer": "adamw", "beta1": 0.8, "beta2": 0.99, "eps": 1e-6, "weight_decay": 0.1},
                     lambda p: torch.optim.AdamW(p, lr=1.0, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
}


def batch(rng: np.random.Generator, kind: str) -> dict[str, np.ndarray]:
    feeds = {"x": rng.normal(size=(8, 6)).astype(F32)}
    if kind in ("cross-entropy", "weighted"):
        feeds["labels"] = rng.integers(0, 4, 8).astype(np.int64)
    if kind in ("mse", "cosine"):
        feeds["target"] = rng.normal(size=(8, 4)).astype(F32)
    if kind in ("kl-div", "weighted"):
        feeds["teacher_logits"] = (rng.normal(size=(8, 4)) * 2).astype(F32)
    if kind == "kl-div-probs":
        logits = rng.normal(size=(8, 4)) * 2
        feeds["teacher_probs"] = (np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)).astype(F32)
    return feeds


def relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-6))


def compare(loss_name: str, optimizer_name: str) -> float:
    rng = np.random.default_rng(0)
    params = {"w1": rng.normal(size=(6, 8)) * 0.5, "b1": rng.normal(size=8) * 0.1,
              "w2": rng.normal(size=(8, 4)) * 0.5, "b2": rng.normal(size=4) * 0.1}
    params = {k: v.astype(F32) for k, v in params.items()}
    model = mlp(params)
    options, factory = OPTIMIZERS[optimizer_name]
    BuildGradients(**LOSSES[loss_name], **options).run(model, None)
    info = json.loads(model.metadata_props[METADATA_KEY])
    session = make_session(model)
    names = [v.name for v in model.graph.outputs]
    carried = {**params, **{s: np.zeros_like(params[p]) for s, p in info["state"].items()}}
    tensors = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    optimizer = factory(list(tensors.values()))
    kind = loss_name if loss_name != "kl-div-probs" else "kl-div"
    worst = 0.0
    for step, lr in zip(range(STEPS), LRS):
        feeds = batch(rng, loss_name)
        hyper = {"lr": np.array(lr, F32), **({"step": np.array(step, np.int64)} if "step" in info else {})}
        results = dict(zip(names, session.run(None, {**feeds, **carried, **hyper})))
        carried = {name: results[info["updates"][name]] for name in carried}
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.zero_grad()
        loss = torch_loss(kind, torch_mlp(tensors, feeds["x"]), feeds)
        loss.backward()
        optimizer.step()
        worst = max(worst, relative(results["loss"], loss.detach().numpy()),
                    *(relative(carried[k], t.detach().numpy()) for k, t in tensors.items()))
    return worst


def main() -> int:
    failed = 0
    for loss_name in LOSSES:
        for optimizer_name in OPTIMIZERS:
            error = compare(loss_name, optimizer_name)
            ok = error <= TOLERANCE
            failed += not ok
            print(f"{loss_name:14s} {optimizer_name:20s} max relative difference {error:.2e} {'ok' if ok else 'FAIL'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
