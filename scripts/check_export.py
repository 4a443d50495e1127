"""Cross-check of `VHeat::save_pytorch_safetensors` against the PyTorch reference (run by hand).

1. Write the exported files and the Rust logits:
       VHEAT_EXPORT_CHECK_DIR=/tmp/vheat-export-check \
       cargo test --release --features wgpu --test export -- --ignored
2. Fetch the reference model definition (MzeroMiko/vHeat, `classification/models/vHeat.py`) to
   a file outside the repository, e.g. /tmp/ref_vHeat.py (it is not vendored here).
3. python scripts/check_export.py /tmp/ref_vHeat.py /tmp/vheat-export-check

For each micro configuration of tests/fixtures/, builds the reference `vHeat`, loads the export
with `load_state_dict(..., strict=True)`, runs the input the Rust side used and prints the
largest absolute difference from the Rust logits. Exits non-zero above 1e-4 (the fixtures'
parity tolerance: float32 on a CPU, different summation orders).
"""

import importlib.util
import json
import sys
import types
from pathlib import Path

import torch
from safetensors.torch import load_file

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures"
TOLERANCE = 1e-4


def load_reference(path):
    # The reference imports einops but does not use it in the classification model.
    sys.modules.setdefault("einops", types.SimpleNamespace(rearrange=None, repeat=None))
    spec = importlib.util.spec_from_file_location("ref_vheat", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.vHeat


def main():
    vheat_cls = load_reference(sys.argv[1])
    check_dir = Path(sys.argv[2])
    worst = 0.0
    for name in ["micro_tiny", "micro_base"]:
        config = json.loads((FIXTURES / f"{name}.json").read_text())["config"]
        model = vheat_cls(**config).eval()
        state = load_file(str(check_dir / f"{name}.export.safetensors"))
        model.load_state_dict(state, strict=True)
        io = load_file(str(check_dir / f"{name}.io.safetensors"))
        with torch.no_grad():
            logits = model(io["input"])
        diff = (logits - io["logits"]).abs().max().item()
        scale = io["logits"].abs().max().item()
        print(f"{name}: {len(state)} tensors loaded strictly; max |logits diff| = {diff:.3e} "
              f"(max |logit| = {scale:.3f})")
        worst = max(worst, diff)
    sys.exit(0 if worst <= TOLERANCE else 1)


if __name__ == "__main__":
    main()
