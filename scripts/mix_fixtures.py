"""Fixtures for tests/mix_ema.rs: timm's SoftTargetCrossEntropy and mixup_target on fixed
inputs. Run with the repo's Python venv (torch, timm):
    python scripts/mix_fixtures.py  ->  tests/fixtures/mix/soft_ce.json
"""
import json
import pathlib

import torch
from timm.data.mixup import mixup_target
from timm.loss import SoftTargetCrossEntropy

torch.manual_seed(0)
cases = []
for (b, k, lam, smoothing) in [(4, 3, 0.7, 0.1), (5, 6, 0.25, 0.0), (2, 10, 1.0, 0.2)]:
    logits = (torch.randn(b, k) * 3).float()
    labels = torch.randint(0, k, (b,))
    target = mixup_target(labels, k, lam=lam, smoothing=smoothing)
    loss = SoftTargetCrossEntropy()(logits, target)
    cases.append({
        "batch": b, "classes": k, "lam": lam, "smoothing": smoothing,
        "logits": logits.flatten().tolist(),
        "labels": labels.tolist(),
        "soft_targets": target.flatten().tolist(),
        "loss": float(loss),
    })
out = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "mix" / "soft_ce.json"
out.parent.mkdir(parents=True, exist_ok=True)
out.write_text(json.dumps({"generator": "scripts/mix_fixtures.py", "torch": torch.__version__, "cases": cases}, indent=1))
print("wrote", out)
