"""Generates tests/fixtures/augment/: timm's RandAugment operations (Pillow underneath) on a
fixed 24x20 RGB image, for tests/augment.rs.

Run with the shared venv:  /work/venv-py/bin/python scripts/augment_fixtures.py
Writes ops.bin (the raw RGB bytes of the source image, then of every result, concatenated) and
ops.json (for each case: op name, argument, resample filter, an optional op applied first,
byte offset).
"""
import json
import os

import numpy as np
from PIL import Image
from timm.data import auto_augment as aa

W, H = 24, 20
FILL = (124, 116, 104)  # timm img_mean for the ImageNet mean, as the reference uses


def source():
    """The input image; tests/augment.rs builds the same one from the same formula."""
    a = np.zeros((H, W, 3), dtype=np.uint8)
    for y in range(H):
        for x in range(W):
            a[y, x] = ((x * 10 + y * 4) % 256, (x * y * 3 + 40) % 256, (200 - x * 5 + y * 6) % 256)
    return Image.fromarray(a, "RGB")


CASES = [
    ("Rotate", 12.5, "bicubic"),
    ("Rotate", -27.0, "bicubic"),
    ("Rotate", 30.0, "bilinear"),
    ("ShearX", 0.27, "bicubic"),
    ("ShearY", -0.2, "bicubic"),
    ("ShearX", -0.13, "bilinear"),
    ("TranslateXRel", 0.3, "bicubic"),
    ("TranslateYRel", -0.25, "bicubic"),
    ("TranslateXRel", -0.117, "bilinear"),
    ("PosterizeIncreasing", 1, None),
    ("PosterizeIncreasing", 3, None),
    ("SolarizeIncreasing", 100, None),
    ("SolarizeAdd", 99, None),
    ("ColorIncreasing", 1.81, None),
    ("ColorIncreasing", 0.37, None),
    ("ContrastIncreasing", 1.6, None),
    ("ContrastIncreasing", 0.4, None),
    ("BrightnessIncreasing", 1.7, None),
    ("BrightnessIncreasing", 0.3, None),
    ("SharpnessIncreasing", 1.9, None),
    ("SharpnessIncreasing", 0.2, None),
    ("AutoContrast", 0, None),
    ("Equalize", 0, None),
    ("Invert", 0, None),
    # On a dimmed copy (Brightness 0.3 first, its own case above), whose histogram spans only
    # part of 0..255, so the stretch and the equalisation move every value.
    ("AutoContrast", 0, None, ("BrightnessIncreasing", 0.3)),
    ("Equalize", 0, None, ("BrightnessIncreasing", 0.3)),
]

FN = {
    "Rotate": aa.rotate,
    "ShearX": aa.shear_x,
    "ShearY": aa.shear_y,
    "TranslateXRel": aa.translate_x_rel,
    "TranslateYRel": aa.translate_y_rel,
    "PosterizeIncreasing": aa.posterize,
    "SolarizeIncreasing": aa.solarize,
    "SolarizeAdd": aa.solarize_add,
    "ColorIncreasing": aa.color,
    "ContrastIncreasing": aa.contrast,
    "BrightnessIncreasing": aa.brightness,
    "SharpnessIncreasing": aa.sharpness,
    "AutoContrast": aa.auto_contrast,
    "Equalize": aa.equalize,
    "Invert": aa.invert,
}
RESAMPLE = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR}


def main():
    out = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "augment")
    os.makedirs(out, exist_ok=True)
    img = source()
    blob = bytearray(np.asarray(img).tobytes())
    index = {"width": W, "height": H, "fill": FILL, "cases": []}
    for case in CASES:
        op, arg, resample = case[:3]
        pre = case[3] if len(case) > 3 else None
        src = FN[pre[0]](img, pre[1]) if pre else img
        fn = FN[op]
        if resample is not None:
            res = fn(src, arg, fillcolor=FILL, resample=RESAMPLE[resample])
        elif op in ("AutoContrast", "Equalize", "Invert"):
            res = fn(src)
        else:
            res = fn(src, arg)
        assert res.size == img.size and res.mode == "RGB"
        index["cases"].append(
            {
                "op": op,
                "arg": arg,
                "resample": resample or "bicubic",
                "pre": list(pre) if pre else None,
                "offset": len(blob),
            }
        )
        blob += np.asarray(res).tobytes()
    with open(os.path.join(out, "ops.bin"), "wb") as f:
        f.write(blob)
    with open(os.path.join(out, "ops.json"), "w") as f:
        json.dump(index, f, indent=1)
    print(f"{len(CASES)} cases, {len(blob)} bytes")


if __name__ == "__main__":
    main()
