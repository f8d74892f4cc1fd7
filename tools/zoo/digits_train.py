"""Writes ``digits-train.npz``: the 1,257 labelled training digits of ``digits-cnn`` (for QAT/fine-tuning).

Same images and split as :mod:`cnn` (scikit-learn digits scaled to [0, 1], upsampled bilinearly to
32x32, the seeded permutation holding out 540 for ``digits-test.npz``), so training on this file
never sees a test image. Arrays: ``image`` float32 ``(1257, 1, 32, 32)``, ``labels`` int64. Run in
the environment with torch and scikit-learn::

    python tools/zoo/digits_train.py --out tools/out/zoo
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cnn import digits_images, split  # noqa: E402  (the zoo's own module, next to this script)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("tools/out/zoo"))
    args = parser.parse_args(argv)
    images, labels = digits_images()
    train, _ = split(len(labels))
    args.out.mkdir(parents=True, exist_ok=True)
    np.savez(args.out / "digits-train.npz", image=images[train], labels=labels[train])
    print(f"wrote {args.out / 'digits-train.npz'}: {len(train)} labelled training images")
    return 0


if __name__ == "__main__":
    sys.exit(main())
