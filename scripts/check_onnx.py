#!/usr/bin/env python3
"""Cross-check of `VHeat::save_onnx` / `vheat export` with ONNX's own checker and ONNX Runtime
(run by hand, not in CI; the test suite checks the same files' computation with tract).

1. Write vHeat-T (random weights) exported at 224² and 512², an input and the crate's logits:
       VHEAT_ONNX_CHECK_DIR=/tmp/vheat-onnx-check \\
       cargo test --release --test onnx_export write_vheat_t_for_onnx_runtime -- --ignored --nocapture
   and, optionally, the CLI's export of `--pretrained tiny` through a local mirror with the
   crate's logits for it (tests/cli_pretrained.rs, same variable):
       VHEAT_ONNX_CHECK_DIR=/tmp/vheat-onnx-check \\
       cargo test --release --test cli_pretrained export_pretrained_tiny
2. /work/venv-py/bin/python scripts/check_onnx.py /tmp/vheat-onnx-check

For every `NAME.onnx` with a `NAME.io.safetensors` beside it: `onnx.checker.check_model(...,
full_check=True)` (the operators' schemas and the shape inference), then ONNX Runtime (CPU)
runs `input` and the largest absolute difference from the crate's `logits` is printed. Exits
non-zero when the checker fails or a difference exceeds 1e-4 (float32 on a CPU, different
summation orders: the parity tolerance of the test suite against PyTorch).
"""
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from safetensors.numpy import load_file

TOLERANCE = 1e-4


def check(path: Path, io_path: Path) -> float:
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    opset = [(o.domain or "ai.onnx", o.version) for o in model.opset_import]
    inputs = [(i.name, [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim])
              for i in model.graph.input]
    outputs = [(o.name, [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim])
               for o in model.graph.output]
    io = load_file(str(io_path))
    options = ort.SessionOptions()
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    started = time.perf_counter()
    (logits,) = session.run(["logits"], {"images": io["input"]})
    elapsed = time.perf_counter() - started
    diff = float(np.abs(logits - io["logits"]).max())
    scale = float(np.abs(io["logits"]).max())
    print(f"{path.name}: checker (full_check) passed; IR {model.ir_version}, opset {opset}, "
          f"{len(model.graph.node)} nodes; inputs {inputs}; outputs {outputs}")
    print(f"  ONNX Runtime {ort.__version__}: batch {io['input'].shape[0]} in {elapsed:.2f} s; "
          f"max |logits - crate| = {diff:.3e} (max |logit| = {scale:.3f})")
    return diff


def main():
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/vheat-onnx-check")
    print(f"onnx {onnx.__version__}, onnxruntime {ort.__version__}")
    worst = 0.0
    found = 0
    for path in sorted(folder.glob("*.onnx")):
        io_path = path.with_name(path.stem + ".io.safetensors")
        if not io_path.exists():
            continue
        found += 1
        worst = max(worst, check(path, io_path))
    if found == 0:
        sys.exit(f"no NAME.onnx with NAME.io.safetensors in {folder}")
    print(f"worst difference {worst:.3e} (tolerance {TOLERANCE:g})")
    sys.exit(0 if worst <= TOLERANCE else 1)


if __name__ == "__main__":
    main()
