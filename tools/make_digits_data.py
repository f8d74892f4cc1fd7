"""Extracts the 8x8 handwritten digits used by ``optimize-graph demo`` into the package.

The data is scikit-learn's copy of the UCI "Optical Recognition of Handwritten Digits" test set
(1,797 images of 8x8 pixels, intensities 0..16; E. Alpaydin and C. Kaynak, CC BY 4.0). It is
stored as ``onnxsmith/data/digits.npz`` with two arrays:

- ``images``: uint8, shape (1797, 8, 8), values 0..16;
- ``labels``: uint8, shape (1797,), values 0..9.

scikit-learn is needed only to run this script once; it is not a dependency of onnxsmith::

    python -m venv /tmp/skl && /tmp/skl/bin/pip install scikit-learn numpy
    /tmp/skl/bin/python tools/make_digits_data.py
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "onnxsmith" / "data" / "digits.npz"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write the .npz file")
    args = parser.parse_args()

    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.asarray(digits.images).astype(np.uint8)
    labels = np.asarray(digits.target).astype(np.uint8)
    if not np.array_equal(images, digits.images) or not np.array_equal(labels, digits.target):
        raise SystemExit("digits data does not fit in uint8; refusing to write a lossy copy")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, images=images, labels=labels)
    print(f"wrote {args.out}: {len(labels)} images, {args.out.stat().st_size} bytes")


if __name__ == "__main__":
    main()
