#!/usr/bin/env python3
"""Side-by-side speed of vheat and PyTorch (and ONNX Runtime) on the CPU, rounds interleaved.

Each point is run as a user runs it:
- vheat: `target/release/vheat bench --json ...` (the public API through the CLI, flex backend,
  the system allocator), one process per round, its own warm-up excluded from the timing;
- PyTorch: `scripts/vheat_torch.py`'s independent implementation of the reference model, eager,
  `torch.set_num_threads(THREADS)`, inference under `torch.inference_mode()`;
- ONNX Runtime (if `onnxruntime` imports): the same PyTorch model exported to ONNX (opset 17),
  `intra_op_num_threads = THREADS`, for the inference points that name it;
- ONNX Runtime running the crate's export (column `onnx(vheat)`): the same weights saved as a
  `.pth` and written by `vheat export` (the inference form at the point's size), same session
  options; its logits are compared with PyTorch's and the largest difference printed.

A training step is forward, label-smoothed (0.1) cross-entropy, backward, global-norm clip at 5
and AdamW (weight decay 0.05) on both sides. Rounds alternate which side goes first. The ratio
is mean vheat img/s over mean PyTorch img/s; the median of the rounds' own ratios (vheat over
the PyTorch run next to it) is printed beside it, being robust to a burst of load that slows
one run. The CPU's ISA (AVX2 / AVX-512 / AVX-512-BF16) is
read from /proc/cpuinfo and printed with the results.

Not part of CI. Needs a venv with torch (and optionally onnx + onnxruntime):

    cargo build --release --bin vheat
    /path/to/venv/bin/python scripts/bench_vs_torch.py                 # every point, 3 rounds
    /path/to/venv/bin/python scripts/bench_vs_torch.py --points t224b8 job32b64 --rounds 5
    /path/to/venv/bin/python scripts/bench_vs_torch.py --burn-ops    # + vheat without its kernels
    /path/to/venv/bin/python scripts/bench_vs_torch.py --baseline /tmp/vheat-before  # + an older build
    /path/to/venv/bin/python scripts/bench_vs_torch.py --list
    /path/to/venv/bin/python scripts/bench_vs_torch.py --isa avx2   # both sides capped at AVX2

`--isa avx2` stands in for an AVX2-only machine on an AVX-512 one: it caps vheat's kernels
(`VHEAT_KERNEL_ISA=avx2`) and PyTorch's three libraries (`ATEN_CPU_CAPABILITY=avx2` for its own
kernels, `MKL_ENABLE_INSTRUCTIONS=AVX2` for MKL's products, `ONEDNN_MAX_CPU_ISA=AVX2` for
oneDNN's convolutions), and leaves ONNX Runtime out (it has no such switch). Two things stay
AVX-512 on vheat's side: the `gemm` crate behind its training step's weight gradients (no
switch; about a fifth of a vHeat-T training step) and Burn's own operators.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import tempfile
import time

# `--isa avx2` must reach PyTorch's libraries before they load: re-run with the caps set.
ISA_CAPS = {"avx2": dict(VHEAT_KERNEL_ISA="avx2", ATEN_CPU_CAPABILITY="avx2",
                         MKL_ENABLE_INSTRUCTIONS="AVX2", ONEDNN_MAX_CPU_ISA="AVX2")}
_isa_args = [a.split("=", 1)[1] for a in sys.argv if a.startswith("--isa=")]
_isa_args += [b for a, b in zip(sys.argv, sys.argv[1:]) if a == "--isa"]
_caps = ISA_CAPS.get(_isa_args[-1], {}) if _isa_args else {}
if any(os.environ.get(k) != v for k, v in _caps.items()):
    os.execve(sys.executable, [sys.executable] + sys.argv, dict(os.environ, **_caps))

# PyTorch is needed to measure, not to read `--help` or `--list`: without it the script says
# how to get it once the arguments are parsed.
try:
    import torch
    import torch.nn.functional as F

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
    from vheat_torch import VHeat  # noqa: E402
except ImportError as e:
    torch = F = VHeat = None
    TORCH_MISSING = str(e)

ROOT = pathlib.Path(__file__).resolve().parent.parent
# Where `cargo build --release --bin vheat` puts the binary: `$CARGO_TARGET_DIR` when it is set.
TARGET_DIR = pathlib.Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")

CONFIGS = {
    # name: (constructor arguments of vheat_torch.VHeat, classes)
    "tiny": dict(depths=[2, 2, 6, 2], dims=[96, 192, 384, 768], post_norm=False, layer_scale=None,
                 drop_path_rate=0.1, num_classes=1000),
    "small": dict(depths=[2, 2, 18, 2], dims=[96, 192, 384, 768], post_norm=True, layer_scale=1e-5,
                  drop_path_rate=0.3, num_classes=1000),
    "base": dict(depths=[2, 2, 18, 2], dims=[128, 256, 512, 1024], post_norm=True, layer_scale=1e-5,
                 drop_path_rate=0.5, num_classes=1000),
    # The README's first command's network (vheat::cli::train::small_config(size, 10)).
    "main-job": dict(depths=[1, 1, 2, 1], dims=[16, 32, 64, 128], post_norm=False, layer_scale=None,
                     drop_path_rate=0.05, num_classes=10),
}

# id: (config, side, batch, step, onnx)
POINTS = {
    "t224b8": ("tiny", 224, 8, "forward", True),
    "job32b64": ("main-job", 32, 64, "train", False),
    "t224b8train": ("tiny", 224, 8, "train", False),
    "t224b1": ("tiny", 224, 1, "forward", False),
    "t512b1": ("tiny", 512, 1, "forward", True),
    "t768b1": ("tiny", 768, 1, "forward", False),
    "s224b1": ("small", 224, 1, "forward", False),
    "b224b1": ("base", 224, 1, "forward", False),
}


def isa() -> str:
    flags = set()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    if "avx512_bf16" in flags:
        return "AVX-512-BF16"
    if "avx512f" in flags:
        return "AVX-512"
    if "avx2" in flags:
        return "AVX2"
    return "no AVX2"


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def torch_model(config: str, side: int, train: bool) -> torch.nn.Module:
    torch.manual_seed(0)
    model = VHeat(img_size=side, **CONFIGS[config])
    return model.train() if train else model.eval()


def time_torch(model, config, side, batch, step, warmup, iters):
    classes = CONFIGS[config]["num_classes"]
    x = torch.randn(batch, 3, side, side)
    if step == "forward":
        def one():
            with torch.inference_mode():
                model(x)
    else:
        y = torch.arange(batch) * 7919 % classes
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05, eps=1e-8)

        def one():
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x), y, label_smoothing=0.1)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            loss.item()
    for _ in range(warmup):
        one()
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        one()
        times.append(time.perf_counter() - t)
    return batch / (sum(times) / len(times))


def onnx_session(model, side, batch, threads):
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    path = pathlib.Path(tempfile.mkdtemp()) / "vheat.onnx"
    x = torch.randn(batch, 3, side, side)
    with torch.no_grad():
        try:
            torch.onnx.export(model, (x,), str(path), opset_version=17, dynamo=False)
        except TypeError:
            torch.onnx.export(model, (x,), str(path), opset_version=17)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session, x.numpy()


def crate_onnx_session(binary, model, config, side, batch, threads):
    """ONNX Runtime on `vheat export`'s file of `model`'s weights, and the largest difference
    between its logits and PyTorch's on one input."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    folder = pathlib.Path(tempfile.mkdtemp())
    torch.save({"model": model.state_dict()}, folder / "model.pth")
    (folder / "config.json").write_text(json.dumps(dict(CONFIGS[config], img_size=side)))
    path = folder / "vheat.onnx"
    subprocess.run([str(binary), "export", str(folder / "model.pth"), str(path), "--config",
                    str(folder / "config.json"), "--size", str(side)], check=True, capture_output=True)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    x = torch.randn(batch, 3, side, side)
    with torch.inference_mode():
        expected = model(x).numpy()
    (got,) = session.run(None, {"images": x.numpy()})
    diff = float(abs(got - expected).max())
    return session, x.numpy(), diff


def time_onnx(session, x, batch, warmup, iters):
    name = session.get_inputs()[0].name
    for _ in range(warmup):
        session.run(None, {name: x})
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        session.run(None, {name: x})
        times.append(time.perf_counter() - t)
    return batch / (sum(times) / len(times))


def time_vheat(binary, config, side, batch, step, warmup, iters, threads, kernels=True):
    cmd = [str(binary), "bench", "--config", config, "--size", str(side), "--batch", str(batch),
           "--warmup", str(warmup), "--iters", str(iters), "--json"]
    if step == "train":
        cmd += ["--step", "train"]
    else:
        cmd += ["--form", "trainable"]  # the ordinary form, as `forward` runs it
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    if not kernels:
        env["VHEAT_HOST_KERNELS"] = "off"  # Burn's operators only: the crate without its kernels
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    line = [l for l in out.splitlines() if l.startswith("{")][-1]
    return json.loads(line)["images_per_s"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", nargs="*", default=list(POINTS), help="point ids (see --list)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--binary", default=str(TARGET_DIR / "release/vheat"),
                    help="the vheat binary to time (default: $CARGO_TARGET_DIR or target/, release)")
    ap.add_argument("--no-onnx", action="store_true")
    ap.add_argument("--burn-ops", action="store_true",
                    help="also time vheat with VHEAT_HOST_KERNELS=off (Burn's operators only)")
    ap.add_argument("--baseline", help="also time this other vheat binary (an earlier build), for "
                    "before-and-after ratios in the same run")
    ap.add_argument("--json-out", help="also write the results here")
    ap.add_argument("--isa", choices=["native", "avx2"], default="native",
                    help="avx2: cap both sides at AVX2, standing in for an AVX2-only machine")
    ap.add_argument("--list", action="store_true")
    args = ap.parse_args()
    if args.list:
        for k, v in POINTS.items():
            print(k, v)
        return
    if torch is None:
        sys.exit(f"bench_vs_torch.py needs PyTorch ({TORCH_MISSING}): run it with a venv that has "
                 "it, e.g. python3 -m venv /tmp/v && /tmp/v/bin/pip install torch onnx onnxruntime")
    torch.set_num_threads(args.threads)
    if args.isa != "native":
        args.no_onnx = True  # ONNX Runtime cannot be capped
    caps = " ".join(f"{k}={v}" for k, v in ISA_CAPS.get(args.isa, {}).items())
    print(f"CPU: {cpu_name()} | ISA: {isa()} | {os.cpu_count()} logical CPUs | {args.threads} threads | "
          f"torch {torch.__version__} ({torch.backends.cpu.get_cpu_capability()})"
          + (f" | capped: {caps}" if caps else ""), flush=True)
    results = []
    for pid in args.points:
        config, side, batch, step, with_onnx = POINTS[pid]
        warmup, iters = (1, 3) if (side >= 512 or step == "train" and config != "main-job") else (2, 5)
        if config == "main-job":
            warmup, iters = 3, 20
        model = torch_model(config, side, step == "train")
        onnx = crate_onnx = None
        if with_onnx and not args.no_onnx and step == "forward":
            onnx = onnx_session(model, side, batch, args.threads)
            crate_onnx = crate_onnx_session(args.binary, model, config, side, batch, args.threads)
        runs = {"vheat": [], "torch": [], "onnx": [], "onnx-vheat": [], "burn-ops": [], "baseline": []}
        for r in range(args.rounds):
            order = ["vheat", "torch", "onnx", "onnx-vheat", "burn-ops", "baseline"]
            if r % 2 == 1:
                order.reverse()
            for side_name in order:
                if side_name == "vheat":
                    runs["vheat"].append(time_vheat(args.binary, config, side, batch, step, warmup, iters,
                                                    args.threads))
                elif side_name == "torch":
                    runs["torch"].append(time_torch(model, config, side, batch, step, warmup, iters))
                elif side_name == "onnx" and onnx is not None:
                    runs["onnx"].append(time_onnx(onnx[0], onnx[1], batch, warmup, iters))
                elif side_name == "onnx-vheat" and crate_onnx is not None:
                    runs["onnx-vheat"].append(time_onnx(crate_onnx[0], crate_onnx[1], batch, warmup, iters))
                elif side_name == "baseline" and args.baseline:
                    runs["baseline"].append(time_vheat(args.baseline, config, side, batch, step, warmup,
                                                       iters, args.threads))
                elif side_name == "burn-ops" and args.burn_ops:
                    runs["burn-ops"].append(time_vheat(args.binary, config, side, batch, step, warmup, iters,
                                                       args.threads, kernels=False))
        mean = {k: sum(v) / len(v) for k, v in runs.items() if v}
        # Each round's vheat and PyTorch runs are adjacent in time; the median of the rounds'
        # own ratios is robust to a burst of load from other tenants that slows one run.
        round_ratios = sorted(v / t for v, t in zip(runs["vheat"], runs["torch"]))
        median_ratio = statistics.median(round_ratios)
        row = dict(point=pid, config=config, side=side, batch=batch, step=step, runs=runs, mean=mean,
                   ratio_vs_torch=mean["vheat"] / mean["torch"], median_round_ratio_vs_torch=median_ratio)
        if "onnx" in mean:
            row["ratio_vs_onnx"] = mean["vheat"] / mean["onnx"]
        results.append(row)
        fmt = lambda v: " / ".join(f"{x:.2f}" for x in v)  # noqa: E731
        line = (f"{pid:<12} {config} {side}² b{batch} {step:<7} vheat {fmt(runs['vheat'])}  |  "
                f"torch {fmt(runs['torch'])}  |  ratio {row['ratio_vs_torch']:.2f} "
                f"(median of rounds {median_ratio:.2f})")
        if "onnx" in mean:
            line += f"  |  onnx {fmt(runs['onnx'])}  vheat/onnx {row['ratio_vs_onnx']:.2f}"
        if "onnx-vheat" in mean:
            row["ratio_vs_onnx_vheat"] = mean["vheat"] / mean["onnx-vheat"]
            row["onnx_vheat_max_diff_vs_torch"] = crate_onnx[2]
            line += (f"  |  onnx(vheat) {fmt(runs['onnx-vheat'])}  vheat/onnx(vheat) "
                     f"{row['ratio_vs_onnx_vheat']:.2f} (max |logits - torch| {crate_onnx[2]:.1e})")
        if "burn-ops" in mean:
            row["ratio_burn_ops_vs_torch"] = mean["burn-ops"] / mean["torch"]
            line += f"  |  kernels off {fmt(runs['burn-ops'])}  ratio {row['ratio_burn_ops_vs_torch']:.2f}"
        if "baseline" in mean:
            row["ratio_vs_baseline"] = mean["vheat"] / mean["baseline"]
            line += f"  |  baseline {fmt(runs['baseline'])}  vheat/baseline {row['ratio_vs_baseline']:.2f}"
        print(line, flush=True)
    if args.json_out:
        pathlib.Path(args.json_out).write_text(json.dumps(
            dict(isa=isa(), cpu=cpu_name(), capped=ISA_CAPS.get(args.isa, {}), results=results), indent=1))


if __name__ == "__main__":
    main()
