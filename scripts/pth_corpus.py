"""Writes tests/fixtures/pth_corpus/: checkpoints exactly as `torch.save` writes them, in every
layout the PyTorch world produces for vHeat, with the outputs PyTorch computes from them.

    /work/venv-py/bin/python scripts/pth_corpus.py     # needs torch, numpy, yacs, pillow

Not used by the crate or CI: the files and `expected.json` it writes are committed. The model is
the reference's vHeat (scripts/vheat_torch.py, the reference's key names) in a micro
configuration, so that each file is a few kilobytes; the tensors are the same in every file (one
seeded model), so every file must give the same logits, recorded once by PyTorch.

Files (all loaded by tests/pth_corpus.rs):
- reference_train.pth: what the reference's `save_checkpoint_ema` writes: `model`, `optimizer`
  (a real AdamW state after one step), `lr_scheduler`, `max_accuracy`, `scaler`, `epoch`,
  `config` (a yacs CfgNode: a dict subclass, SETITEMS on a non-dict) and `model_ema`.
- timm.pth: `{state_dict, arch, epoch, args}` with `args` an argparse.Namespace (an object
  rebuilt with BUILD).
- mmengine.pth: `{meta, state_dict, optimizer}`: `meta` holds a HistoryBuffer-like custom object
  with numpy arrays and numpy scalars, `state_dict` the backbone under `backbone.` (with the
  output norms of the reference's dense backbone) beside a `decode_head.`.
- ddp.pth: a bare state dict of a DistributedDataParallel model (every key `module.`…).
- half_fp16.pth, half_bf16.pth: `{model}` in float16 / bfloat16.
- float64.pth: `{model}` in float64.
- lightning.pth: a PyTorch Lightning checkpoint: `state_dict` with every key under `model.`.
- legacy.pth: `{model}` in the legacy non-zip format (`_use_new_zipfile_serialization=False`).
- views.pth: `{model}` whose tensors are all views into one shared storage: offsets, a
  `.chunk`, a transposed (non-contiguous) tensor and a stride-0 expand.
- tiny_train.pth: a vHeat-T checkpoint in the reference's training layout for the local-mirror
  test of `vheat classify --pretrained tiny`: every tensor is an `as_strided` view into one
  small random storage (the file stays ~70 kB although vHeat-T has 28 M parameters), scaled
  head. `expected.json["tiny_top5"]` is the top 5 PyTorch prints for the test's image.
"""
import argparse
import collections
import json
import math
import pathlib
import sys

import numpy as np
import torch
from yacs.config import CfgNode as CN

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from vheat_torch import VHeat  # noqa: E402

# How much the head of the vHeat-T file is scaled: enough for a top 5 that stands out from the
# 1000 classes, not so much that it collapses onto one class.
HEAD_SCALE = 0.6

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests/fixtures/pth_corpus"

MICRO = dict(depths=[1, 1, 1, 1], dims=[4, 4, 8, 8], num_classes=5, img_size=32,
             post_norm=False, layer_scale=None, drop_path_rate=0.0)


def micro_input():
    """The test input, a formula both sides compute: x[c, h, w] = sin(0.37 i + 0.11 c) with
    i = (c * 32 + h) * 32 + w, evaluated in float64 and rounded to float32."""
    i = torch.arange(3 * 32 * 32, dtype=torch.float64).view(3, 32, 32)
    c = torch.arange(3, dtype=torch.float64).view(3, 1, 1)
    return torch.sin(0.37 * i + 0.11 * c).float()[None]


def micro_model():
    torch.manual_seed(23)
    model = VHeat(**MICRO).eval()
    with torch.no_grad():
        # Spread every parameter (the initialisation's LayerNorm 1/0 and zero biases would leave
        # their loading untested).
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model


def logits(model, state):
    model = VHeat(**MICRO).eval()
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    with torch.no_grad():
        return model(micro_input())[0].tolist()


def last_stage(state):
    """The last stage's output of the backbone (before the classifier), [C, H, W] flattened."""
    model = VHeat(**MICRO).eval()
    model.load_state_dict(state, strict=True)
    x = micro_input()
    with torch.no_grad():
        x = model.patch_embed(x)
        for layer, freq in zip(model.layers, model.freq_embed):
            x = layer(x, freq)
    return x[0].flatten().tolist()


def cfg_node():
    c = CN()
    c.MODEL = CN()
    c.MODEL.TYPE = "vheat"
    c.MODEL.NAME = "vHeat_micro"
    c.MODEL.DROP_PATH_RATE = 0.0
    c.MODEL.VHEAT = CN()
    c.MODEL.VHEAT.DEPTHS = MICRO["depths"]
    c.MODEL.VHEAT.EMBED_DIM = 4
    c.TRAIN = CN()
    c.TRAIN.EPOCHS = 300
    c.TRAIN.BASE_LR = 1e-3
    c.TRAIN.OPTIMIZER = CN({"NAME": "adamw", "BETAS": (0.9, 0.999)})
    c.AMP_ENABLE = True
    c.TAG = "default"
    return c


def adamw_state(model):
    """The optimizer state the reference's training loop saves after one step."""
    shadow = VHeat(**MICRO)
    shadow.load_state_dict(model.state_dict())
    opt = torch.optim.AdamW(shadow.parameters(), lr=1e-3, weight_decay=0.05)
    shadow(micro_input()).sum().backward()
    opt.step()
    return opt.state_dict()


def scheduler_state():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10)
    return sched.state_dict()


class HistoryBuffer:
    """mmengine.logging.HistoryBuffer's pickled shape: an object with numpy arrays."""

    def __init__(self):
        self._log_history = np.array([0.9, 0.7, 0.5])
        self._count_history = np.array([1, 1, 1])
        self.max_length = 1000000


def save(name, obj, **kwargs):
    path = OUT / name
    torch.save(obj, path, **kwargs)
    print(f"{name}: {path.stat().st_size} bytes")


def views_of_one_storage(state):
    """The same values as `state`, every tensor a view into one shared storage."""
    flat = torch.cat([v.flatten() for v in state.values()] + [torch.zeros(64)])
    out, pos = collections.OrderedDict(), 0
    for k, v in state.items():
        n = v.numel()
        out[k] = flat[pos:pos + n].view(v.shape)
        pos += n
    # A transposed Linear weight: stored [in, out] contiguous, saved as its [out, in] view
    # (strides (1, out)).
    w = next(k for k in out if k.endswith("op.linear.weight"))
    t = state[w].t().contiguous()
    out[w] = t.t()
    assert not out[w].is_contiguous()
    # `.chunk` of a larger tensor: two biases as halves of one storage.
    b0, b1 = [k for k in out if k.endswith("mlp.fc2.bias")][:2]
    both = torch.cat([state[b0], state[b1]])
    out[b0], out[b1] = both.chunk(2)
    assert out[b1].storage_offset() > 0
    # A stride-0 tensor (an expand of one value): that bias is set to one value everywhere.
    key = "patch_embed.conv1.bias"
    state = collections.OrderedDict(state)
    out[key] = state[key][:1].clone().expand(state[key].shape)
    state[key] = out[key].clone()
    assert out[key].stride() == (0,)
    return out, state


def tiny_strided(seed=7, n=4096, head_scale=HEAD_SCALE):
    """A vHeat-T state dict whose tensors are `as_strided` views into one random storage of
    `n` floats: LayerNorm weights 1 + 0.1 r, everything else 0.05 r, the head's scaled."""
    model = VHeat(depths=[2, 2, 6, 2], dims=[96, 192, 384, 768], num_classes=1000, post_norm=False)
    g = torch.Generator().manual_seed(seed)
    buf = torch.randn(n, generator=g)
    one_plus = 1 + 0.1 * buf
    small = 0.05 * buf
    head = head_scale * small
    out = collections.OrderedDict()
    for i, (k, v) in enumerate(model.state_dict().items()):
        shape = list(v.shape)
        strides = [0] * len(shape)
        used, stride = 0, 1
        for d in reversed(range(len(shape))):
            size = shape[d]
            if size > 1:
                room = n - 1 - used
                # The first dimension takes what is left; others leave room for the ones before.
                share = room if d == 0 else room // 4
                stride = max(1, min(stride, share // (size - 1)))
                used += (size - 1) * stride
            strides[d] = stride
            stride = stride * size
        offset = (i * 97) % max(1, n - used)
        assert offset + used < n, k
        is_norm = v.dim() == 1 and ("norm" in k or k.startswith("classifier.0")) and k.endswith("weight")
        base = head if k.startswith("classifier.3") else one_plus if is_norm else small
        out[k] = torch.as_strided(base, shape, strides, offset)
    return out


def tiny_image():
    """The PNG tests/cli_pretrained.rs writes: 64x48, a gradient with a yellow square."""
    img = np.zeros((48, 64, 3), dtype=np.uint8)
    for y in range(48):
        for x in range(64):
            if 16 <= x < 40 and 12 <= y < 36:
                img[y, x] = (250, 200, 20)
            else:
                img[y, x] = ((x * 4) % 256, (y * 5) % 256, 128)
    return img


def tiny_top5(state):
    """PyTorch's top 5 for the test image with the registry's preprocessing (Pillow bicubic
    resize of the short side to 256, centre crop 224, ImageNet mean/std)."""
    from PIL import Image

    img = Image.fromarray(tiny_image())
    w, h = img.size
    short = 256
    size = (short, int(short * h / w)) if w <= h else (int(short * w / h), short)
    img = img.resize(size, Image.BICUBIC)
    w, h = img.size
    left, top = int(round((w - 224) / 2.0)), int(round((h - 224) / 2.0))
    img = img.crop((left, top, left + 224, top + 224))
    x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    x = ((x - mean) / std)[None]
    model = VHeat(depths=[2, 2, 6, 2], dims=[96, 192, 384, 768], num_classes=1000, post_norm=False).eval()
    model.load_state_dict(state, strict=True)
    with torch.no_grad():
        p = torch.softmax(model(x), 1)[0] * 100
    top = torch.topk(p, 5)
    return [[int(i), round(float(v), 4)] for v, i in zip(top.values, top.indices)]


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    model = micro_model()
    state = model.state_dict()  # an OrderedDict with `_metadata` (pickled with BUILD)
    expected = {"config": MICRO, "input": "x[c,h,w] = f32(sin(0.37 ((c*32+h)*32+w) + 0.11 c))"}
    expected["logits"] = logits(model, state)

    ema_state = collections.OrderedDict((k, v + 0.01) for k, v in state.items())
    expected["logits_ema"] = logits(model, ema_state)
    save("reference_train.pth", {
        "model": state,
        "optimizer": adamw_state(model),
        "lr_scheduler": scheduler_state(),
        "max_accuracy": 12.5,
        "scaler": {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5,
                   "growth_interval": 2000, "_growth_tracker": 0},
        "epoch": 3,
        "config": cfg_node(),
        "model_ema": ema_state,
    })

    args = argparse.Namespace(model="vheat_micro", lr=1e-3, epochs=300, amp=True, mean=None)
    save("timm.pth", {"epoch": 3, "arch": "vheat_micro", "state_dict": state, "args": args,
                      "version": 2, "metric": np.float64(12.5)})

    backbone = collections.OrderedDict(
        (f"backbone.{k}", v) for k, v in state.items() if not k.startswith("classifier."))
    backbone["decode_head.conv_seg.weight"] = torch.randn(4, 8, 1, 1)
    backbone["decode_head.conv_seg.bias"] = torch.zeros(4)
    meta = {
        "mmengine_version": "0.10.4",
        "epoch": 1, "iter": 40, "seed": np.int64(1234),
        "message_hub": {"log_scalars": {"train/loss": HistoryBuffer()},
                        "runtime_info": {"dataset_meta": {"classes": ("a", "b"),
                                                          "palette": [[1, 2, 3], [4, 5, 6]]}}},
        "hook_msgs": {"best_score": np.float32(0.5), "ckpt": {1, 2, 3}},
    }
    save("mmengine.pth", {"meta": meta, "state_dict": backbone,
                          "optimizer": {"state": {}, "param_groups": [{"lr": 1e-3, "params": [0, 1]}]}})
    expected["last_stage"] = last_stage(state)

    save("ddp.pth", collections.OrderedDict((f"module.{k}", v) for k, v in state.items()))

    for dtype, name in [(torch.float16, "half_fp16"), (torch.bfloat16, "half_bf16"),
                        (torch.float64, "float64")]:
        cast = collections.OrderedDict((k, v.to(dtype)) for k, v in state.items())
        save(f"{name}.pth", {"model": cast})
        # The logits of the rounded weights (computed in float32): the crate converts each
        # stored value exactly, so these are what it must reproduce.
        expected[f"logits_{name}"] = logits(model, cast)

    save("legacy.pth", {"model": state}, _use_new_zipfile_serialization=False)

    save("lightning.pth", {
        "epoch": 3, "global_step": 120, "pytorch-lightning_version": "2.4.0",
        "state_dict": collections.OrderedDict((f"model.{k}", v) for k, v in state.items()),
        "optimizer_states": [adamw_state(model)], "lr_schedulers": [scheduler_state()],
        "hyper_parameters": {"lr": 1e-3, "betas": (0.9, 0.999)},
    })

    views, view_values = views_of_one_storage(state)
    save("views.pth", {"model": views})
    expected["logits_views"] = logits(model, view_values)

    tiny = tiny_strided()
    save("tiny_train.pth", {
        "model": tiny,
        "optimizer": {"state": {}, "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.999),
                                                     "params": list(range(len(tiny)))}]},
        "lr_scheduler": scheduler_state(),
        "max_accuracy": 82.3,
        "scaler": {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5,
                   "growth_interval": 2000, "_growth_tracker": 0},
        "epoch": 299,
        "config": cfg_node(),
        "model_ema": tiny,
    })
    expected["tiny_top5"] = tiny_top5(tiny)
    print("tiny top 5 (index, percent):", expected["tiny_top5"])

    # Two small inputs for the committed fuzz corpus (tests/fuzz_corpus/).
    fuzz = OUT.parent.parent / "fuzz_corpus"
    sub = collections.OrderedDict([("patch_embed.conv1.bias", torch.arange(2.0))])
    torch.save({"config": cfg_node(), "model": sub, "seen": {1, 2}, "np": np.float32(1.5)},
               fuzz / "torch-dict-subclass.pth")
    shared = torch.arange(8.0)
    torch.save({"model": {"patch_embed.conv1.bias": shared[2:4], "x": shared.view(2, 4).t()}},
               fuzz / "torch-legacy-views.pth", _use_new_zipfile_serialization=False)

    (OUT / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")


if __name__ == "__main__":
    main()
