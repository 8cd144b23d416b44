"""Figure 6 at CPU scale: learned transform coding vs uniform quantisation of φ on CIFAR-10.

For each given model (the paper compares VC-INR with its COIN++/Functa implementation) this
fits the quality levels with the library's ``fit-codec`` (learned levels, one per λ, trained on
the *training* items; uniform levels of 1..8 bits with per-dimension train-set histograms as
their entropy model, as COIN++), then measures every level on the first ``--test-images``
CIFAR-10 *test* images:

* rate: the bytes of the whole ``.vci`` file ``compress`` would write for the image (the
  rANS payload packed with the real container header of a CIFAR-10 PNG; ``bpp``) and of the
  payload alone (``payload_bpp``), as bits per pixel; the entropy model's ideal bits are
  recorded too.  The header (~54 B, 0.42 bpp at 32×32) is the same for every level, so the
  plot shows both rates: the paper's Figure 6 counts no container;
* quality: PSNR of the decoded image rounded to 8 bits, as ``decompress`` writes it.

BD-rate and BD-PSNR of each model's learned curve against its uniform curve (and of VC-INR
learned against COIN++ uniform) come from :mod:`vcinr.evaluate.bdrate`.  Nothing is tuned
on the test images: the settings below are fixed before looking at them.

Usage::

    python experiments/figure6.py --model vcinr=runs/table1/cifar10-vcinr-128 \\
        --model functa=runs/table1/cifar10-functa-128 --results docs/results

writes ``RESULTS/figure6.json``, ``RESULTS/figure6.png`` (payload rates) and
``RESULTS/figure6-file.png`` (whole-file rates).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import tempfile
from pathlib import Path

import torch
from PIL import Image

from runinfo import Stopwatch, machine, utc_now
from vcinr.codec import entropy
from vcinr.codec.bitstream import Header, pack
from vcinr.codec.codecs import latent_stats
from vcinr.codec.fit import FitSettings, fit_codecs
from vcinr.codec.levels import list_levels, load_level
from vcinr.data import load_items
from vcinr.evaluate.bdrate import bd_psnr, bd_rate
from vcinr.evaluate.plots import Curve, rd_plot
from vcinr.meta.model import load_model
from vcinr.meta.training import flat_items
from vcinr.modalities import read_signal

LABELS = {"vcinr": "VC-INR", "functa": "COIN++ (Functa)", "mscn": "MSCN"}


def png_signal_meta(image: torch.Tensor) -> dict:
    """The meta ``compress`` stores for ``image`` saved as a PNG: what the image reader records."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "image.png"
        Image.fromarray((image * 255).round().byte().numpy()).save(path)
        return read_signal(path).meta


def level_points(model_dir: Path, test_images: int) -> tuple[float, list[dict]]:
    """Unquantised test PSNR and one RD point per quality level on the first test images."""
    loaded = load_model(model_dir)
    model = loaded.model
    coords, features = flat_items(load_items(loaded.config.data, "test"))
    features = features[:test_images]
    latents = model.encode(coords, features)
    pixels = coords.shape[0]

    def psnr(code: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            pred = torch.round(model.decode(coords, code).clamp(0, 1) * 255) / 255  # as decompress writes it
        return model.loss.quality(model.loss.feature_errors(pred, features).flatten(1).mean(1))

    ceiling = float(psnr(latents).mean())
    spec = loaded.spec
    png_meta = png_signal_meta(features[0].reshape(*spec.item_shape, spec.out_dim))
    points = []
    for info in list_levels(loaded):
        level = load_level(loaded, info)
        codec = level.codec
        symbols = codec.to_symbols(latents)
        payload = [entropy.encode(symbols[i : i + 1], codec.tables) for i in range(symbols.shape[0])]
        header = Header(loaded.fingerprint, level.fingerprint, codec.kind, spec.modality, spec.out_dim,
                        tuple(spec.item_shape), tuple(spec.item_shape), 1, int(symbols.shape[1]), png_meta)
        files = [len(pack(header, p)) for p in payload]
        ideal = [codec.estimated_bits(symbols[i : i + 1]) for i in range(symbols.shape[0])]
        points.append({
            "kind": info.kind, "level": info.name, "setting": info.label,
            "bpp": 8.0 * sum(files) / len(files) / pixels,
            "payload_bpp": 8.0 * sum(map(len, payload)) / len(payload) / pixels,
            "ideal_bpp": sum(ideal) / len(ideal) / pixels,
            "psnr": float(psnr(codec.from_symbols(symbols)).mean()),
            "train_metrics": info.record.get("metrics"),
        })
    return ceiling, points


def transform_coding_headroom(model_dir: Path, items: int = 512, probes: int = 8) -> dict:
    """How much any transform coder could save over uniform quantisation of normalised φ, at high rate.

    Classic high-rate transform-coding theory (Gaussian approximation): against a uniform
    quantiser with one step size on every normalised dimension, (a) decorrelating φ saves
    ½·log2(AM/GM) bits per dimension of the eigenvalues of φ's correlation matrix, and (b)
    spending bits where the *data-space* distortion is sensitive saves ½·log2(AM/GM) of the
    per-dimension sensitivities ``E‖∂x̂/∂φ_i‖²`` (normalised units; estimated with Gaussian
    probes).  Measured on training items only; reported in bits per dimension and in bpp.
    """
    loaded = load_model(model_dir)
    model = loaded.model
    cfg = dataclasses.replace(loaded.config.data, max_items=items)
    coords, features = flat_items(load_items(cfg, "train"))
    phi = model.encode(coords, features)
    mean, std = latent_stats(phi)
    x = (phi - mean) / std
    eig = torch.linalg.eigvalsh(torch.corrcoef(x.T.double())).clamp_min(1e-12)
    sensitivity = torch.zeros(phi.shape[1], dtype=torch.float64)
    generator = torch.Generator().manual_seed(0)
    for start in range(0, phi.shape[0], 64):
        z = x[start : start + 64].clone().requires_grad_(True)
        pred = model.decode(coords, z * std + mean)
        for _ in range(probes):
            v = torch.randn(pred.shape, generator=generator)
            (grad,) = torch.autograd.grad(pred, z, v, retain_graph=True)
            sensitivity += grad.double().square().sum(0) / probes
    sensitivity = (sensitivity / (phi.shape[0] * pred[0].numel())).clamp_min(1e-20)

    def am_gm_bits(v: torch.Tensor) -> float:
        return 0.5 * math.log2(float(v.mean()) / math.exp(float(v.log().mean())))

    decorrelation, allocation = am_gm_bits(eig), am_gm_bits(sensitivity)
    per_bpp = phi.shape[1] / coords.shape[0]
    return {"items": int(phi.shape[0]), "decorrelation_bits_per_dim": decorrelation,
            "allocation_bits_per_dim": allocation, "decorrelation_bpp": decorrelation * per_bpp,
            "allocation_bpp": allocation * per_bpp,
            "top_eigenvalue_share": float(eig.max() / eig.sum()),
            "sensitivity_max_over_median": float(sensitivity.max() / sensitivity.median())}


def curve(points: list[dict], kind: str, rate: str = "payload_bpp") -> tuple[list[float], list[float]]:
    chosen = sorted((p for p in points if p["kind"] == kind), key=lambda p: p[rate])
    return [p[rate] for p in chosen], [p["psnr"] for p in chosen]


def bd(anchor: list[dict], test: list[dict], anchor_kind: str, test_kind: str, rate: str = "payload_bpp") -> dict:
    a, t = curve(anchor, anchor_kind, rate), curve(test, test_kind, rate)
    rate, gain = bd_rate(*a, *t), bd_psnr(*a, *t)
    return {"bd_rate_percent": rate.value, "bd_psnr_db": gain.value, "psnr_interval": rate.interval,
            "log_bpp_interval": gain.interval, "note": rate.reason or gain.reason}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", required=True, metavar="NAME=DIR",
                        help="a CIFAR-10 model directory, named by its conditioning (vcinr, functa)")
    parser.add_argument("--results", type=Path, default=Path("docs/results"))
    parser.add_argument("--lambdas", nargs="+", type=float, default=[0.0001, 0.0003, 0.001, 0.003, 0.01])
    parser.add_argument("--bits", nargs="+", type=int, default=[1, 2, 3, 4, 5, 6, 7, 8])
    parser.add_argument("--steps", type=int, default=1500,
                        help="training steps of every learned level (400 left them far from converged)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-items", type=int, default=2000, help="training items the coders are fitted on")
    parser.add_argument("--test-images", type=int, default=256)
    args = parser.parse_args()

    settings = FitSettings(lambdas=tuple(args.lambdas), bits=tuple(args.bits), steps=args.steps, lr=args.lr,
                           batch_size=args.batch_size, max_items=args.max_items)
    models: dict[str, dict] = {}
    for spec in args.model:
        name, _, directory = spec.partition("=")
        with Stopwatch() as clock:
            fit_codecs(directory, settings=settings)
        ceiling, points = level_points(Path(directory), args.test_images)
        headroom = transform_coding_headroom(Path(directory))
        models[name] = {"directory": directory, "unquantised_psnr": ceiling, "points": points, "headroom": headroom,
                        "fit_cpu_seconds": clock.cpu, "fit_wall_seconds": clock.wall, "finished": utc_now()}
        print(f"{name}: unquantised {ceiling:.2f} dB; fit-codec {clock.cpu:.0f} s CPU; high-rate headroom "
              f"{headroom['decorrelation_bpp']:.4f} bpp (decorrelation) + {headroom['allocation_bpp']:.4f} bpp (allocation)",
              flush=True)
        for p in points:
            print(f"  {p['setting']:<22} {p['payload_bpp']:.4f} payload bpp (ideal {p['ideal_bpp']:.4f}, file "
                  f"{p['bpp']:.4f})  {p['psnr']:.2f} dB", flush=True)

    comparisons = {}
    for rate in ("payload_bpp", "bpp"):
        suffix = "" if rate == "payload_bpp" else " (whole file)"
        for name, m in models.items():
            comparisons[f"{name}: learned vs uniform{suffix}"] = bd(m["points"], m["points"], "uniform", "learned", rate)
        if "vcinr" in models and "functa" in models:
            comparisons[f"vcinr learned vs functa uniform{suffix}"] = bd(
                models["functa"]["points"], models["vcinr"]["points"], "uniform", "learned", rate)
    for label, row in comparisons.items():
        print(f"{label}: BD-rate {row['bd_rate_percent']}, BD-PSNR {row['bd_psnr_db']} ({row['note'] or 'ok'})")

    args.results.mkdir(parents=True, exist_ok=True)
    out = args.results / "figure6.json"
    out.write_text(json.dumps({"experiment": "figure6", "machine": machine(), "settings": vars(args),
                               "test_images": args.test_images, "models": models, "bd_anchor_uniform": comparisons},
                              indent=1, default=str))
    for rate, png, unit in (("payload_bpp", "figure6.png", "payload bpp (rANS bytes, no container)"),
                            ("bpp", "figure6-file.png", "bpp of the whole .vci file")):
        curves = []
        for name, m in models.items():
            label = LABELS.get(name, name)
            curves.append(Curve(f"{label} learned", *curve(m["points"], "learned", rate), kind="vcinr"))
            curves.append(Curve(f"{label} uniform", *curve(m["points"], "uniform", rate), kind="codec"))
        rd_plot(curves, args.results / png, rate_unit=unit, log_x=True,
                title=f"CIFAR-10, first {args.test_images} test images: learned vs uniform")
    print(f"wrote {out}, {args.results / 'figure6.png'} and {args.results / 'figure6-file.png'}")


if __name__ == "__main__":
    main()
