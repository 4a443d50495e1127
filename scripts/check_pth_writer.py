"""Cross-check of the test-side `.pth` writer (`tests/common/pth.rs`) against PyTorch (run by hand).

1. Write the files:
       VHEAT_PTH_OUT=/tmp/vheat-pth-check \
       cargo test --release --features wgpu --test cli_pretrained
2. python scripts/check_pth_writer.py /tmp/vheat-pth-check [REFERENCE_vHeat.py]
   (the optional second argument: the reference model definition, MzeroMiko/vHeat
   `classification/models/vHeat.py`, fetched outside the repository as for check_export.py)

`small.pth` must load with `torch.load(..., weights_only=True)` as `{"model": OrderedDict}` with
the keys and shapes below and value j of tensor i equal to i + j / 1000 (float32, so compared
exactly against the same float32 arithmetic). `vHeat_tiny.pth` (the checkpoint the CLI test
serves) must load the same way, with vHeat-T's 30,853,480 parameters and the reference's stem
shape, and (given the reference definition) load into the reference vHeat-T with
`load_state_dict(..., strict=True)`. Exits non-zero on any mismatch.
"""

import importlib.util
import sys
import types
from collections import OrderedDict
from pathlib import Path

import torch

SMALL = [
    ("a.weight", (2, 3)),
    ("b.bias", (300,)),
    ("c.scale", ()),
    ("stage.0.conv.weight", (4, 1, 3, 3)),
]


def check_small(path):
    ckpt = torch.load(path, weights_only=True)
    assert isinstance(ckpt, dict) and list(ckpt) == ["model"], type(ckpt)
    sd = ckpt["model"]
    assert isinstance(sd, OrderedDict), type(sd)
    assert sorted(sd) == [n for n, _ in SMALL], list(sd)
    for i, (name, shape) in enumerate(SMALL):
        t = sd[name]
        assert t.dtype == torch.float32, (name, t.dtype)
        assert tuple(t.shape) == shape, (name, t.shape)
        assert t.is_contiguous() and not t.requires_grad, name
        n = t.numel()
        want = torch.full((n,), float(i), dtype=torch.float32) + (
            torch.arange(n, dtype=torch.float32) / 1000.0
        )
        assert torch.equal(t.reshape(-1), want), (name, t.reshape(-1)[:5], want[:5])
    print(f"{path}: {len(sd)} tensors, keys, shapes and values as written")


def check_tiny(path):
    ckpt = torch.load(path, weights_only=True)
    sd = ckpt["model"]
    assert isinstance(sd, OrderedDict), type(sd)
    params = sum(t.numel() for t in sd.values())
    assert all(t.dtype == torch.float32 for t in sd.values())
    # vHeat-T's trainable parameters (tests/fixtures/param_counts.json, from the reference).
    assert params == 30_853_480, params
    assert tuple(sd["patch_embed.conv1.weight"].shape) == (48, 3, 3, 3)
    head = [k for k, t in sd.items() if t.shape[:1] == (1000,)]
    print(f"{path}: {len(sd)} tensors, {params} parameters, head {head}")
    return sd


def load_reference(path):
    # The reference imports einops but does not use it in the classification model.
    sys.modules.setdefault("einops", types.SimpleNamespace(rearrange=None, repeat=None))
    spec = importlib.util.spec_from_file_location("ref_vheat", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.vHeat


def main():
    out = Path(sys.argv[1])
    check_small(out / "small.pth")
    if (out / "vHeat_tiny.pth").exists():
        sd = check_tiny(out / "vHeat_tiny.pth")
        if len(sys.argv) > 2:
            # vHeat-T as the reference's configs/vHeat/vHeat_tiny_224.yaml builds it.
            model = load_reference(sys.argv[2])(
                depths=[2, 2, 6, 2], dims=[96, 192, 384, 768], post_norm=False, layer_scale=None
            )
            model.load_state_dict(sd, strict=True)
            print(f"loaded strictly into the reference vHeat-T ({sys.argv[2]})")
    print("OK")


if __name__ == "__main__":
    main()
