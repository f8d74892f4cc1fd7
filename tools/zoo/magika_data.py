"""magika's ONNX model and labelled real files of this machine, as model inputs.

Run in an environment with the ``magika`` package (see tools/zoo/README.md)::

    python tools/zoo/magika_data.py --out tools/out/zoo

Writes ``magika.onnx`` (the model shipped in the installed ``magika`` package, copied unchanged),
``magika-calib.npz`` (``bytes`` only, ready for ``--calib-data``) and ``magika-test.npz``
(``bytes`` int32 ``(n, 2048)`` and ``labels`` int64 ``(n,)``), plus ``magika-files.json`` listing
each sample's path, extension and label.

Files and labels
    Regular files under ``--roots`` (by default /usr/share, /usr/lib, /usr/include, /etc and this
    interpreter's prefix) are labelled by their extension through :data:`EXTENSIONS`. The mapping
    starts from magika's own knowledge base (``config/content_types_kb.min.json``: label ->
    extensions) restricted to the labels the model predicts (``target_labels_space`` of its
    ``config.min.json``); where the knowledge base names a label the model does not predict, the
    model's label for that content is used instead (``.h`` -> ``c``, ``.hpp`` -> ``cpp``, ``.so``
    -> ``elf``); extensions the knowledge base gives two labels (``.pl``: perl or prolog) are
    resolved to the common one on a Linux system. The knowledge base's ``crt`` is a binary (DER)
    certificate, but Debian's ``.crt`` files are PEM text: a ``.crt`` that begins with
    ``-----BEGIN`` is labelled ``pem`` (:func:`label_of`). A label is the index of its name in
    ``target_labels_space``. An extension is a claim, not ground truth: a ``.txt`` may hold CSV,
    a ``.gz`` may be empty; such files are counted as errors, which is why fp32 accuracy is below 100%.

Selection (deterministic for a given file system)
    Files too small for magika's model (it answers those without the model: fewer than 8 bytes
    left after stripping whitespace) are skipped, as are files whose features duplicate an earlier
    file's. Within each label, candidates are ordered by a hash of their path; up to ``--per-label``
    are taken, the first sixth for calibration and the rest for testing, so classes are balanced up
    to what the machine holds.

Features
    Exactly magika's: :meth:`magika.Magika._extract_features_from_seekable` with the model's config
    (1024 bytes from the start after ``lstrip()``, 1024 from the end after ``rstrip()``, each read from
    at most one 4096-byte block, padded with token 256). The script checks the result: for a handful
    of files, the argmax of our features through onnxruntime must equal the ``dl`` label that the
    ``magika`` Python API reports.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: Extension -> magika model label. Every label is in the model's ``target_labels_space``.
EXTENSIONS: dict[str, str] = {
    # source code and text formats
    "py": "python", "pyi": "python", "c": "c", "h": "c", "cpp": "cpp", "cc": "cpp", "hpp": "cpp",
    "js": "javascript", "sh": "shell", "pl": "perl", "pm": "perl", "php": "php", "tcl": "tcl",
    "f90": "fortran", "cmake": "cmake", "m4": "m4", "css": "css", "html": "html", "xml": "xml",
    "svg": "svg", "json": "json", "yaml": "yaml", "yml": "yaml", "toml": "toml", "ini": "ini",
    "csv": "csv", "md": "markdown", "rst": "rst", "txt": "txt", "sql": "sql", "jinja": "jinja",
    "ps": "postscript", "crt": "crt", "pem": "pem",
    # binary formats
    "pyc": "pythonbytecode", "so": "elf", "gz": "gzip", "bz2": "bzip", "xz": "xz", "zip": "zip",
    "whl": "zip", "jar": "jar", "png": "png", "gif": "gif", "jpg": "jpeg", "jpeg": "jpeg", "ico": "ico",
    "ttf": "ttf", "pdf": "pdf", "wav": "wav", "npy": "npy", "npz": "npz", "pkl": "pickle", "onnx": "onnx",
}

SKIP_DIRS = frozenset({"__pycache__", ".git", "proc", "sys"})


@dataclass(frozen=True)
class Config:
    """The parts of magika's model config that feature extraction needs."""

    beg_size: int
    mid_size: int
    end_size: int
    padding_token: int
    block_size: int
    min_file_size_for_dl: int
    labels: tuple[str, ...]

    @classmethod
    def load(cls, model_dir: Path) -> Config:
        raw = json.loads((model_dir / "config.min.json").read_text())
        return cls(raw["beg_size"], raw["mid_size"], raw["end_size"], raw["padding_token"], raw["block_size"],
                   raw["min_file_size_for_dl"], tuple(raw["target_labels_space"]))


def model_dir() -> Path:
    """The installed magika package's default model folder."""
    import magika

    return Path(magika.Magika()._model_dir)


def features(path: Path, config: Config) -> list[int] | None:
    """magika's model input for ``path`` (beg then end ints), or None when magika would not use its model."""
    from magika import Magika
    from magika.types.seekable import Seekable

    with open(path, "rb") as stream:
        seekable = Seekable(stream)
        if seekable.size < config.min_file_size_for_dl:
            return None
        fs = Magika._extract_features_from_seekable(seekable, config.beg_size, config.mid_size, config.end_size,
                                                    config.padding_token, config.block_size, False)
    if fs.beg[config.min_file_size_for_dl - 1] == config.padding_token:
        return None
    return fs.beg[:config.beg_size] + fs.end[-config.end_size:]


def candidates(roots: list[Path]) -> Iterator[tuple[Path, str]]:
    """Regular, readable, non-symlink files under ``roots`` with a mapped extension, with that extension."""
    for root in roots:
        for folder, dirs, files in os.walk(root):
            dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
            for name in sorted(files):
                ext = name.rsplit(".", 1)[-1].lower() if "." in name else ""
                path = Path(folder) / name
                if ext in EXTENSIONS and not path.is_symlink() and path.is_file() and os.access(path, os.R_OK):
                    yield path, ext


def label_of(path: Path, ext: str) -> str:
    """The label of a file: :data:`EXTENSIONS`, except that a PEM-encoded ``.crt`` is ``pem``."""
    if ext == "crt":
        with open(path, "rb") as stream:
            if stream.read(64).lstrip().startswith(b"-----BEGIN"):
                return "pem"
    return EXTENSIONS[ext]


def _order_key(path: Path) -> str:
    return hashlib.sha1(str(path).encode()).hexdigest()


def select(roots: list[Path], config: Config, per_label: int) -> dict[str, list[tuple[Path, str, list[int]]]]:
    """Up to ``per_label`` files per label with distinct features, in a deterministic order."""
    by_label: dict[str, list[tuple[Path, str]]] = {}
    for path, ext in candidates(roots):
        try:
            label = label_of(path, ext)
        except OSError:
            continue
        by_label.setdefault(label, []).append((path, ext))
    seen: set[bytes] = set()
    chosen: dict[str, list[tuple[Path, str, list[int]]]] = {}
    for label in sorted(by_label):
        picked: list[tuple[Path, str, list[int]]] = []
        for path, ext in sorted(by_label[label], key=lambda item: _order_key(item[0])):
            try:
                ints = features(path, config)
            except OSError:
                continue
            key = np.asarray(ints, dtype=np.int16).tobytes() if ints is not None else b""
            if ints is None or key in seen:
                continue
            seen.add(key)
            picked.append((path, ext, ints))
            if len(picked) == per_label:
                break
        if picked:
            chosen[label] = picked
    return chosen


def check_against_magika(model: Path, paths: list[Path], inputs: np.ndarray, labels: tuple[str, ...]) -> int:
    """Raises SystemExit unless onnxruntime on our features gives magika's own ``dl`` label for each path."""
    import onnxruntime as ort
    from magika import Magika

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    ours = session.run(None, {session.get_inputs()[0].name: inputs})[0].argmax(1)
    theirs = Magika().identify_paths(paths)
    for path, index, result in zip(paths, ours, theirs):
        if labels[index] != str(result.dl.label):
            raise SystemExit(f"feature mismatch on {path}: ours {labels[index]}, magika {result.dl.label}")
    return len(paths)


def main(argv: list[str] | None = None) -> int:
    default_roots = ["/usr/share", "/usr/lib", "/usr/include", "/etc", sys.prefix]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("tools/out/zoo"))
    parser.add_argument("--roots", nargs="+", type=Path, default=[Path(r) for r in default_roots])
    parser.add_argument("--per-label", type=int, default=36, help="files per label at most (default: 36)")
    parser.add_argument("--check", type=int, default=40, help="files to check against the magika API")
    args = parser.parse_args(argv)

    import onnxruntime as ort

    source = model_dir()
    config = Config.load(source)
    args.out.mkdir(parents=True, exist_ok=True)
    model = args.out / "magika.onnx"
    shutil.copyfile(source / "model.onnx", model)

    chosen = select(args.roots, config, args.per_label)
    calib, test, listing = [], [], []
    for label, picked in chosen.items():
        n_calib = len(picked) // 6
        for i, (path, ext, ints) in enumerate(picked):
            split = "calib" if i < n_calib else "test"
            (calib if split == "calib" else test).append((path, config.labels.index(label), ints))
            listing.append({"path": str(path), "extension": ext, "label": label, "split": split})

    def arrays(items: list[tuple[Path, int, list[int]]]) -> tuple[np.ndarray, np.ndarray]:
        return (np.asarray([ints for _, _, ints in items], dtype=np.int32),
                np.asarray([index for _, index, _ in items], dtype=np.int64))

    calib_x, _ = arrays(calib)
    test_x, test_y = arrays(test)
    np.savez(args.out / "magika-calib.npz", bytes=calib_x)
    np.savez(args.out / "magika-test.npz", bytes=test_x, labels=test_y)
    (args.out / "magika-files.json").write_text(json.dumps(listing, indent=1) + "\n")

    step = max(1, len(test) // args.check)
    checked = check_against_magika(model, [p for p, _, _ in test[::step]], test_x[::step], config.labels)
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    predicted = session.run(None, {"bytes": test_x})[0].argmax(1)
    accuracy = float((predicted == test_y).mean())
    print(f"magika: {len(chosen)} labels, {len(calib)} calibration and {len(test)} test files; "
          f"features match the magika API on {checked} files; fp32 test accuracy {accuracy:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
