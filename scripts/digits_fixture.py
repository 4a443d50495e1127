"""Writes tests/fixtures/digits/digits.u8 from scikit-learn's bundled 8x8 digits.

scikit-learn ships a copy of the test part of the UCI "Optical Recognition of Handwritten
Digits" data set (1,797 images, 8x8, grey levels 0-16; E. Alpaydin and C. Kaynak, 1998,
CC BY 4.0). The file is 1,797 records of 65 bytes: 64 pixels row-major (0-16), then the label.
Run: /path/to/venv/bin/python scripts/digits_fixture.py
"""
import pathlib

import numpy as np
from sklearn.datasets import load_digits

digits = load_digits()
images = digits.images.astype(np.uint8).reshape(-1, 64)
labels = digits.target.astype(np.uint8).reshape(-1, 1)
assert images.max() <= 16 and images.shape == (1797, 64)
out = pathlib.Path(__file__).resolve().parent.parent / "tests/fixtures/digits/digits.u8"
out.write_bytes(np.hstack([images, labels]).tobytes())
print(f"wrote {out} ({out.stat().st_size} bytes); class counts {np.bincount(digits.target)}")
