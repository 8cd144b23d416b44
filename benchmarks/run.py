"""Speed and memory benchmarks: ``python -m benchmarks.run`` (docs/performance.md).

Cases (fp32, ``--threads`` CPU threads, 2 by default):

* ``meta-step/<scheme>`` — one outer Meta-SGD step (3 second-order inner steps, the outer
  loss, its backward pass and the Adam update) of a SIREN of width 128 and depth 6 on a batch
  of 16 CIFAR-10 images (32×32×3) with dim(φ) = 128, for ``functa``, ``mscn`` and ``vcinr``
  (``--scale paper``: width 512, depth 15, batch 32, dim(φ) = 2048, the paper's CIFAR-10 step);
* ``baseline/coin++`` — the Functa meta-step computed as COIN++ does, by nested autograd
  (``torch.autograd.grad(create_graph=True)``), for comparison;
* ``memory/<scheme>`` — the same step with gradient checkpointing of the inner steps; its
  peak memory against that of ``meta-step/<scheme>``;
* ``encode`` — ``vcinr.pipeline.compress_file`` of Kodak ``kodim01.png`` (768×512, 384
  patches of 32×32) end to end with the VC-INR model of the meta-step case (untrained: the
  INR work does not depend on the weights) at the 8-bit uniform quality level, against Pillow's
  JPEG 2000 encoder on the same file (PNG read + encode, ~0.5 bpp);
* ``decode`` — ``decompress_file`` of that bitstream to PNG, against JPEG 2000 decoding of
  the Pillow bitstream to PNG;
* ``encode/inr``, ``decode/inr`` — the INR work inside them alone (the inner loop over the 384
  patches plus the encoder's check decode; the decode of the 384 latents), batched as the
  pipeline batches it: what is left of ``encode``/``decode`` is the pipeline's own work
  (reading, entropy coding, the PNG writer, ...).

Every case reports the median wall time and CPU seconds (all threads; less disturbed than wall
time by other jobs on the machine) over ``--repeats`` runs after a warm-up run (the
meta-step cases are timed in turns in one process, encode and decode in another), the peak
memory of one run above the footprint before it, measured in a fresh process per case (peak
RSS with every tensor mapped on its own on CPU, ``max_memory_allocated`` on CUDA),
the analytic matmul FLOPs (:mod:`vcinr.meta.flops`), the achieved GFLOP/s, and that as a
fraction of raw ``torch.mm`` GFLOP/s measured in the same process on the same threads,
alternating with the case's runs so that both see the same machine load: of a 2048×2048
product (the machine's limit) and of a product of a SIREN layer's shape (16384×128 by
128×128, the limit for this workload's matrices).
Results are printed as a table and written to a JSON file (``--out``) for comparison.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

DATA = Path(os.environ.get("VCINR_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
SCHEMES = ("functa", "mscn", "vcinr")
# (width, depth, dim φ, batch) of the meta-step cases: the benchmark network, and the
# paper's CIFAR-10 scale (its 8 accelerators' step; meant for a GPU, ~13 GiB on CPU).
SCALES = {"benchmark": (128, 6, 128, 16), "paper": (512, 15, 2048, 32)}
WIDTH, DEPTH, LATENT, BATCH = SCALES["benchmark"]
SIDE = 32
MM_SIZE = 2048
KODAK = "kodim01.png"
QUALITY = "u8"
J2K_RATE = 48  # compression ratio of the JPEG 2000 reference: 24 / 48 = 0.5 bpp


# --- measurement ------------------------------------------------------------------------------


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _mallopt(option: int, value: int) -> None:
    import ctypes
    import ctypes.util

    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt(option, value)
    except (OSError, AttributeError):
        pass


def exact_memory_accounting() -> None:
    """Map every block of 64 KiB or more on its own, so freed tensors leave the RSS at once."""
    _mallopt(-3, 64 * 1024)  # M_MMAP_THRESHOLD (fixed, no longer adaptive)


def peak_memory_mib(run: Callable[[], object], device: str) -> float:
    """Peak memory of one ``run`` above the footprint before it.

    CUDA: ``max_memory_allocated``.  CPU: peak RSS (VmHWM, reset through
    ``/proc/self/clear_refs``) under :func:`exact_memory_accounting`, i.e. the tensors live
    at the peak plus small-object overhead.
    """
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        run()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak RSS to the current RSS
    except OSError:
        pass
    base = _status_kib("VmRSS")
    run()
    return (_status_kib("VmHWM") - base) / 1024


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _timed(fn: Callable[[], object], device: str) -> float:
    return _timed_cpu(fn, device)[0]


def _timed_cpu(fn: Callable[[], object], device: str) -> tuple[float, float]:
    """Wall and CPU seconds (all threads of this process) of one ``fn()``.

    CPU seconds compare runs on a machine shared with other jobs better than wall time: a
    busy machine stretches the wall time of a run far more than the CPU time it needs.
    """
    _sync(device)
    start, cpu = time.perf_counter(), time.process_time()
    fn()
    _sync(device)
    return time.perf_counter() - start, time.process_time() - cpu


@dataclass
class Case:
    """A benchmark case: ``run`` once is what is timed; ``reference`` (if any) is timed beside it."""

    name: str
    run: Callable[[], object]
    flops: int
    info: dict = field(default_factory=dict)
    reference: Callable[[], object] | None = None
    cleanup: Callable[[], object] | None = None


def time_cases(cases: list[Case], device: str, repeats: int) -> dict[str, dict]:
    """Warm every case up, then ``repeats`` rounds: each case once, then the mm references.

    Interleaving makes the cases (and the references) see the same machine load, so their
    ratios hold even when the load drifts during the run.
    """
    import torch

    from vcinr.backend import keep_freed_memory

    keep_freed_memory()  # timing runs with the allocator settings of training
    a = torch.randn(MM_SIZE, MM_SIZE, device=device)
    b = torch.randn(MM_SIZE, MM_SIZE, device=device)
    rows = torch.randn(BATCH * SIDE * SIDE, WIDTH, device=device)
    square = torch.randn(WIDTH, WIDTH, device=device)
    mm = lambda: torch.mm(a, b)  # noqa: E731
    layer_mm = lambda: torch.mm(rows, square)  # noqa: E731  (the shape of a SIREN layer's products)
    results: dict[str, dict] = {}
    for case in cases:
        results[case.name] = {"warmup_s": _timed(case.run, device), "times_s": [], "cpu_times_s": [],
                              "reference_times_s": []}
        _timed(case.run, device)
        if case.reference is not None:
            _timed(case.reference, device)
    mm_times, layer_times = [], []
    _timed(mm, device)
    for _ in range(repeats):
        for case in cases:
            wall, cpu = _timed_cpu(case.run, device)
            results[case.name]["times_s"].append(wall)
            results[case.name]["cpu_times_s"].append(cpu)
            if case.reference is not None:
                results[case.name]["reference_times_s"].append(_timed(case.reference, device))
        mm_times.append(min(_timed(mm, device) for _ in range(3)))
        layer_times.append(min(_timed(layer_mm, device) for _ in range(5)))
    mm_gflops = 2 * MM_SIZE**3 / statistics.median(mm_times) / 1e9
    layer_gflops = 2 * rows.shape[0] * WIDTH * WIDTH / statistics.median(layer_times) / 1e9
    for case in cases:
        r = results[case.name]
        r.update(case.info, case=case.name, flops=case.flops, median_s=statistics.median(r["times_s"]),
                 median_cpu_s=statistics.median(r["cpu_times_s"]), mm_gflops=mm_gflops, layer_mm_gflops=layer_gflops)
        if r["reference_times_s"]:
            r["reference_median_s"] = statistics.median(r["reference_times_s"])
        else:
            del r["reference_times_s"]
        r["gflops"] = r["flops"] / r["median_s"] / 1e9
        r["fraction_of_mm"] = r["gflops"] / mm_gflops
        r["fraction_of_layer_mm"] = r["gflops"] / layer_gflops
        if case.cleanup is not None:
            case.cleanup()
    return results


# --- cases ------------------------------------------------------------------------------------


def use_scale(name: str) -> None:
    """Size the meta-step cases (module constants, read by every case builder)."""
    global WIDTH, DEPTH, LATENT, BATCH
    WIDTH, DEPTH, LATENT, BATCH = SCALES[name]


def _config(scheme: str):
    from vcinr.config import Config, ModelConfig

    return Config(model=ModelConfig(width=WIDTH, depth=DEPTH, conditioning=scheme, latent_dim=LATENT))


def _cifar_batch():
    import torch

    from vcinr.data import DataConfig, load_items

    path = DATA / "cifar10"
    if path.is_dir():
        items = load_items(DataConfig(kind="cifar10", path=str(path), max_items=BATCH), "train")
        return items.features.reshape(BATCH, -1, 3)[:BATCH].float(), "CIFAR-10 train"
    return torch.rand(BATCH, SIDE * SIDE, 3), "uniform noise (CIFAR-10 not found)"


def _meta_step_case(name: str, device: str, compile_: bool, workers: int | None) -> Case:
    kind, scheme = name.split("/")
    if kind == "baseline":
        return _coin_baseline_case(name, device)
    return _meta_step(name, scheme, kind == "memory", device, compile_, workers)


def _meta_step(name: str, scheme: str, checkpointing: bool, device: str, compile_: bool,
               workers: int | None) -> Case:
    """The outer step as ``vcinr train`` runs it (``workers``: ``None`` picks what training picks)."""
    import torch

    from vcinr.meta.flops import meta_step_flops
    from vcinr.meta.model import ItemSpec, build_model
    from vcinr.meta.performance import meta_backward, meta_loss_function, step_workers
    from vcinr.signal import grid_coordinates

    torch.manual_seed(0)
    model = build_model(_config(scheme), ItemSpec("image", 2, 3, "mse", (SIDE, SIDE), None)).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    coords = grid_coordinates((SIDE, SIDE), 0.0, 1.0).reshape(-1, 2).to(device)
    targets, source = _cifar_batch()
    targets = targets.to(device)
    meta_loss = meta_loss_function(model, compile_)
    params = list(model.parameters())
    workers = step_workers(device, compile_) if workers is None else workers

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        meta_backward(meta_loss, params, coords, targets, workers, checkpointing=checkpointing)
        optimizer.step()

    return Case(name, step, meta_step_flops(model, BATCH, SIDE * SIDE),
                {"data": source, "checkpointing": checkpointing, "compile": compile_, "workers": workers})


def _coin_baseline_case(name: str, device: str) -> Case:
    """The Functa meta-step written as COIN++ does: plain SIREN code + nested autograd.

    ``sin(w0 · (W h + b + shift))`` layer by layer and ``torch.autograd.grad(create_graph=True)``
    for the inner gradient — the straightforward implementation the explicit one replaces.
    """
    import torch
    from torch.nn import functional as F

    from vcinr.meta.flops import meta_step_flops
    from vcinr.meta.model import ItemSpec, build_model
    from vcinr.signal import grid_coordinates

    torch.manual_seed(0)
    model = build_model(_config("functa"), ItemSpec("image", 2, 3, "mse", (SIDE, SIDE), None)).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    coords = grid_coordinates((SIDE, SIDE), 0.0, 1.0).reshape(-1, 2).to(device)
    targets, source = _cifar_batch()
    targets = targets.to(device)

    siren, to_shifts = model.siren, model.conditioning.to_shifts

    def predict(phi: torch.Tensor) -> torch.Tensor:
        h = coords
        for layer, shift in zip(siren.hidden, torch.split(to_shifts(phi), siren.width, dim=-1)):
            h = torch.sin(siren.w0 * (F.linear(h, layer.weight, layer.bias) + shift.unsqueeze(1)))
        return siren.output(h)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        phi = model.state0.expand(BATCH, -1)
        for _ in range(model.inner_steps):
            loss = (predict(phi) - targets).square().mean(dim=(1, 2)).sum()
            (grad,) = torch.autograd.grad(loss, phi, create_graph=True)
            phi = phi - model.step_sizes() * grad
        (predict(phi) - targets).square().mean().backward()
        optimizer.step()

    return Case(name, step, meta_step_flops(model, BATCH, SIDE * SIDE), {"data": source})


def _kodak() -> Path:
    path = DATA / "kodak" / KODAK
    if not path.is_file():
        raise SystemExit(f"benchmarks: {path} not found (set VCINR_DATA to the shared data folder)")
    return path


def prepare_codec_model(directory: Path) -> Path:
    """The encode/decode model: the meta-step VC-INR on 32×32 Kodak patches, 8-bit uniform level."""
    import torch

    from vcinr.codec.fit import FitSettings, fit_codecs
    from vcinr.data import DataConfig, load_items
    from vcinr.meta.model import build_model, save_model
    from vcinr.training import item_spec

    model_dir = directory / "model"
    if (model_dir / "codecs").is_dir():
        return model_dir
    config = _config("vcinr")
    config.data = DataConfig(kind="images", path=str(_kodak().parent), patch=[SIDE, SIDE], max_items=64)
    torch.manual_seed(0)
    spec = item_spec(config, load_items(config.data, "train"))
    save_model(build_model(config, spec), config, spec, model_dir)
    fit_codecs(model_dir, settings=FitSettings(lambdas=(), bits=(8,), max_items=64, eval_items=16), progress=False)
    return model_dir


def _codec_flops(model_dir: Path, encode: bool) -> int:
    """Matmul FLOPs of compress (inner loop + the encoder's check decode) or of decompress."""
    from vcinr.meta.flops import decode_flops, encode_flops
    from vcinr.meta.model import load_model
    from vcinr.pipeline import BATCH as PIPELINE_BATCH

    model = load_model(model_dir).model
    patches = (768 // SIDE) * (512 // SIDE)
    batches = [min(PIPELINE_BATCH, patches - start) for start in range(0, patches, PIPELINE_BATCH)]
    flops = sum(decode_flops(model, b, SIDE * SIDE).forward for b in batches)
    if encode:
        flops += sum(encode_flops(model, b, SIDE * SIDE) for b in batches)
    return flops


def _codec_case(name: str, model_dir: Path, device: str) -> Case:
    from PIL import Image

    from vcinr.pipeline import compress_file, decompress_file

    if device != "cpu":
        raise SystemExit("benchmarks: the encode/decode cases run the CPU pipeline; use --device cpu")
    source = _kodak()
    tmp = tempfile.TemporaryDirectory(prefix="vcinr-bench-")
    vci, decoded = Path(tmp.name) / "kodim01.vci", Path(tmp.name) / "decoded.png"
    report = compress_file(source, model_dir, QUALITY, vci)
    j2k = io.BytesIO()
    Image.open(source).save(j2k, "JPEG2000", quality_mode="rates", quality_layers=[J2K_RATE])

    def j2k_encode() -> None:
        Image.open(source).save(io.BytesIO(), "JPEG2000", quality_mode="rates", quality_layers=[J2K_RATE])

    def j2k_decode() -> None:
        Image.open(io.BytesIO(j2k.getvalue())).save(io.BytesIO(), "PNG")

    info = {"vci_bpp": report.bpp, "psnr_db": report.value, "j2k_bpp": 8 * len(j2k.getvalue()) / (768 * 512),
            "reference": "JPEG 2000 (Pillow/OpenJPEG)"}
    if name == "encode":
        return Case(name, lambda: compress_file(source, model_dir, QUALITY, vci), _codec_flops(model_dir, True),
                    info, j2k_encode, tmp.cleanup)
    return Case(name, lambda: decompress_file(vci, model_dir, decoded), _codec_flops(model_dir, False),
                info, j2k_decode, tmp.cleanup)


def _inr_case(name: str, model_dir: Path) -> Case:
    """The INR work of encode (inner loop + check decode) or decode alone, batched as the pipeline does."""
    import torch

    from vcinr.meta.model import load_model
    from vcinr.modalities import read_signal
    from vcinr.patching import split_patches
    from vcinr.pipeline import BATCH as PIPELINE_BATCH
    from vcinr.signal import grid_coordinates

    model = load_model(model_dir).model
    patches = split_patches(read_signal(_kodak(), "image").features, (SIDE, SIDE)).reshape(-1, SIDE * SIDE, 3)
    coords = grid_coordinates((SIDE, SIDE), 0.0, 1.0).reshape(-1, 2)
    with torch.no_grad():
        codes = torch.cat([model.conditioning.code(model.adapt(coords, p)) for p in patches.split(PIPELINE_BATCH)])

    def decode() -> None:
        with torch.no_grad():
            for code in codes.split(PIPELINE_BATCH):
                model.decode(coords, code)

    def encode() -> None:
        with torch.no_grad():
            for p in patches.split(PIPELINE_BATCH):
                model.conditioning.code(model.adapt(coords, p))
        decode()

    encoding = name.startswith("encode")
    return Case(name, encode if encoding else decode, _codec_flops(model_dir, encoding))


def build_case(name: str, spec: dict) -> Case:
    if name in ("encode/inr", "decode/inr"):
        return _inr_case(name, Path(spec["model_dir"]))
    if name in ("encode", "decode"):
        return _codec_case(name, Path(spec["model_dir"]), spec["device"])
    return _meta_step_case(name, spec["device"], spec["compile"], spec["workers"])


# --- worker / driver --------------------------------------------------------------------------


def worker(spec: dict) -> dict:
    """``spec["mode"]``: ``memory`` (the peak of one run of one case) or ``timing`` (a group)."""
    import torch

    torch.set_num_threads(spec["threads"])
    use_scale(spec["scale"])
    if spec["mode"] == "memory":
        exact_memory_accounting()
        case = build_case(spec["cases"][0], spec)
        warmup = _timed(case.run, spec["device"])  # compiles, creates the optimiser state, ...
        peak = peak_memory_mib(case.run, spec["device"])
        if case.cleanup is not None:
            case.cleanup()
        return {case.name: {"peak_mib": peak, "memory_warmup_s": warmup}}
    cases = [build_case(name, spec) for name in spec["cases"]]
    return time_cases(cases, spec["device"], spec["repeats"])


def run_worker(spec: dict) -> dict:
    """Run a worker in a fresh process."""
    env = dict(os.environ, OMP_NUM_THREADS=str(spec["threads"]))
    root = Path(__file__).resolve().parents[1]
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), str(root / "src"), env.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, "-m", "benchmarks.run", "--worker", json.dumps(spec)],
                          capture_output=True, text=True, env=env, cwd=root)
    if proc.returncode != 0:
        raise SystemExit(f"benchmarks: {spec['mode']} of {', '.join(spec['cases'])} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _load() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def _machine(threads: int, device: str) -> dict:
    import torch

    info = {"python": platform.python_version(), "torch": torch.__version__, "threads": threads, "device": device,
            "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()}
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                 if line.startswith("model name")]
        if names:
            info["cpu"] = names[0]
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name()
    return info


def _row(r: dict) -> str:
    extra = ""
    if "reference_median_s" in r:
        extra = f"  {r['median_s'] / r['reference_median_s']:6.1f}× JPEG 2000 ({r['reference_median_s']:.3f} s)"
    return (f"{r['case']:<18} {r['median_s']:8.3f} s {r['median_cpu_s']:8.3f} CPU s {r['peak_mib']:7.0f} MiB "
            f"{r['flops'] / 1e9:7.1f} GFLOP "
            f"{r['gflops']:6.1f} GFLOP/s {100 * r['fraction_of_mm']:5.1f} % of mm ({r['mm_gflops']:.0f}) "
            f"{100 * r['fraction_of_layer_mm']:5.1f} % of layer mm ({r['layer_mm_gflops']:.0f}){extra}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default="meta-step,baseline,memory,encode,decode",
                        help="comma-separated case kinds or names, e.g. meta-step,encode or meta-step/vcinr")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per case after one warm-up (default 5)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (meta-step and memory cases)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the meta-step (as VCINR_COMPILE=1)")
    parser.add_argument("--scale", choices=sorted(SCALES), default="benchmark",
                        help="size of the meta-step cases: the benchmark network (width 128, depth 6, dim φ 128, "
                        "batch 16) or the paper's CIFAR-10 step (512, 15, 2048, 32; for a GPU)")
    parser.add_argument("--workers", type=int, help="threads a meta-step splits its batch over (default: as "
                        "training does: --threads on CPU, 1 on a GPU or with --compile)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/latest.json"), help="JSON results file")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0

    wanted = [c.strip() for c in args.cases.split(",") if c.strip()]
    names = ([f"meta-step/{s}" for s in SCHEMES] + ["baseline/coin++"] + [f"memory/{s}" for s in SCHEMES]
             + ["encode", "encode/inr", "decode", "decode/inr"])
    codec_names = ("encode", "encode/inr", "decode", "decode/inr")
    cases = [n for n in names if n in wanted or n.split("/")[0] in wanted]
    if not cases:
        parser.error(f"no such case in {args.cases!r}; cases: {', '.join(names)}")
    if args.scale != "benchmark" and any(c in codec_names for c in cases):
        parser.error("--scale sizes the meta-step cases only; leave out encode/decode")
    use_scale(args.scale)
    base = {"threads": args.threads, "device": args.device, "repeats": args.repeats, "compile": args.compile,
            "workers": args.workers, "scale": args.scale}
    with tempfile.TemporaryDirectory(prefix="vcinr-bench-") as tmp:
        if any(c in codec_names for c in cases):
            print("preparing the encode/decode model (untrained VC-INR, 8-bit uniform level) ...", flush=True)
            base["model_dir"] = str(prepare_codec_model(Path(tmp)))
        load_before = _load()
        print(f"load average {load_before} | {args.threads} threads | {args.device}", flush=True)
        results: dict[str, dict] = {}
        steps = [c for c in cases if c not in codec_names]
        codecs = [c for c in cases if c in codec_names]
        for group in (steps, codecs):  # cases of a group are timed in turns in one process
            if group:
                for name, result in run_worker({**base, "mode": "timing", "cases": group}).items():
                    results[name] = {**result, "load_after": _load()}
        for name in cases:  # each case's peak memory in a process of its own
            results[name].update(run_worker({**base, "mode": "memory", "cases": [name]})[name])
            print(_row(results[name]), flush=True)
    results = [results[name] for name in cases]
    by_case = {r["case"]: r for r in results}
    for scheme in SCHEMES:
        plain, ckpt = by_case.get(f"meta-step/{scheme}"), by_case.get(f"memory/{scheme}")
        if plain and ckpt:
            print(f"memory/{scheme}: peak {plain['peak_mib']:.0f} MiB without checkpointing, "
                  f"{ckpt['peak_mib']:.0f} MiB with ({ckpt['peak_mib'] / plain['peak_mib']:.2f}×), "
                  f"time {ckpt['median_s'] / plain['median_s']:.2f}×")
    if "meta-step/functa" in by_case and "baseline/coin++" in by_case:
        ratio = by_case["baseline/coin++"]["median_s"] / by_case["meta-step/functa"]["median_s"]
        print(f"the nested-autograd (COIN++) step takes {ratio:.2f}× the time of the explicit functa step")
    if "meta-step/functa" in by_case and "meta-step/vcinr" in by_case:
        f, v = by_case["meta-step/functa"], by_case["meta-step/vcinr"]
        print(f"vcinr / functa meta-step: {v['median_s'] / f['median_s']:.2f}× the time, "
              f"{v['flops'] / f['flops']:.2f}× the matmul FLOPs")
    summary = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["python -m benchmarks.run", *(argv if argv is not None else sys.argv[1:])]),
        "machine": _machine(args.threads, args.device), "load_before": load_before, "load_after": _load(),
        "setup": {"scale": args.scale, "width": WIDTH, "depth": DEPTH, "latent_dim": LATENT, "batch": BATCH,
                  "item": [SIDE, SIDE, 3],
                  "inner_steps": 3, "second_order": True, "mm_reference": f"torch.mm {MM_SIZE}x{MM_SIZE} fp32",
                  "layer_mm_reference": f"torch.mm {BATCH * SIDE * SIDE}x{WIDTH} @ {WIDTH}x{WIDTH} fp32",
                  "kodak": KODAK, "quality": QUALITY},
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
