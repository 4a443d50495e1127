"""The PyTorch side of the digits comparison: the same network and the same from-scratch recipe
as `cargo run --release --example train -- --data DIR` (no other flag), on the same files.

    cargo run --release --example digits -- --write-only DIR   # writes DIR/train, DIR/val (32x32 PNGs)
    python scripts/train_digits_torch.py DIR [--epochs N] [--seed S]

Recipe (the crate's from-scratch defaults for images of 64 px or less, `vheat::train::Recipe`):
vHeat depths 1-1-2-1, widths 16-32-64-128, pre-norm, drop-path 0.05; AdamW (0.9, 0.999, eps 1e-8),
weight decay 0.05 on weights only (no decay on norms, biases, FVEs), peak lr 2e-3 at batch 64,
linear warm-up from 1e-6 over 2 epochs then cosine to 1e-5, stepped per iteration; label smoothing
0.1; global gradient-norm clip 5; 30 epochs; `light` augmentation (random affine: rotation
+-10 deg, translation +-1/16 of the side, scale 0.9-1.1, no flip); evaluation: the image as is
(crop_pct 1), ImageNet mean/std.
Not part of CI.
"""
import argparse
import math
import pathlib
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from vheat_torch import VHeat  # noqa: E402

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def folder(root):
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    items = [(f, i) for i, c in enumerate(classes) for f in sorted((root / c).glob("*.png"))]
    return classes, items


class Files(torch.utils.data.Dataset):
    def __init__(self, items, tf):
        self.items, self.tf = items, tf
        self.images = [Image.open(f).convert("RGB") for f, _ in items]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.tf(self.images[i]), self.items[i][1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir", type=pathlib.Path)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    torch.set_num_threads(2)

    classes, train_items = folder(args.dir / "train")
    _, val_items = folder(args.dir / "val")
    size = Image.open(train_items[0][0]).size[0]
    norm = transforms.Compose([transforms.ToTensor(), transforms.Normalize(MEAN, STD)])
    light = transforms.Compose([
        transforms.RandomAffine(degrees=10, translate=(1 / 16, 1 / 16), scale=(0.9, 1.1),
                                interpolation=transforms.InterpolationMode.BILINEAR),
        norm,
    ])
    train = torch.utils.data.DataLoader(Files(train_items, light), batch_size=args.batch, shuffle=True, num_workers=0)
    val = torch.utils.data.DataLoader(Files(val_items, norm), batch_size=256)

    model = VHeat([1, 1, 2, 1], [16, 32, 64, 128], num_classes=len(classes), img_size=size,
                  post_norm=False, layer_scale=None, drop_path_rate=0.05)
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim <= 1 or "freq_embed" in name else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.999), eps=1e-8)
    steps_per_epoch = len(train)
    total, warm = steps_per_epoch * args.epochs, 2 * steps_per_epoch
    warmup_lr, min_lr = 1e-6, 1e-5

    def lr_at(step):
        if step < warm:
            return warmup_lr + (args.lr - warmup_lr) * step / warm
        t = (step - warm) / max(1, total - warm)
        return min_lr + 0.5 * (args.lr - min_lr) * (1 + math.cos(math.pi * t))

    start, step = time.time(), 0
    for epoch in range(1, args.epochs + 1):
        model.train()
        seen = correct = 0
        for x, y in train:
            for g in opt.param_groups:
                g["lr"] = lr_at(step)
            logits = model(x)
            loss = F.cross_entropy(logits, y, label_smoothing=0.1)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            step += 1
            seen += len(y)
            correct += (logits.argmax(1) == y).sum().item()
        model.eval()
        vc = vn = 0
        with torch.no_grad():
            for x, y in val:
                vc += (model(x).argmax(1) == y).sum().item()
                vn += len(y)
        print(f"epoch {epoch}/{args.epochs}  train acc {100 * correct / seen:.1f} %  val acc {100 * vc / vn:.1f} %  {time.time() - start:.0f} s", flush=True)
    print(f"final validation accuracy: {100 * vc / vn:.1f} % ({vn} images) in {time.time() - start:.0f} s; torch {torch.__version__}")


if __name__ == "__main__":
    main()
