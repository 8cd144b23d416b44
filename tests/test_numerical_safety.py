"""Non-finite meta-steps are skipped and logged, never applied; a run that keeps diverging stops.

Second-order meta-learning can blow up (paper, appendix E.1).  The trainer checks the loss
and the gradient norm of every outer step: a non-finite step is not applied and is logged to
``metrics.jsonl``; ``MAX_BAD_STEPS`` in a row end the run with a one-line error, leaving the
last good checkpoint and never writing non-finite weights.  Non-finite values are injected by
wrapping the real meta-loss, so the rest of the loop runs as in production.
"""

import functools
import json
import math

import pytest
import torch

from vcinr.cli import main
from vcinr.errors import ModelError
from vcinr.meta import training
from vcinr.meta.run_directory import CHECKPOINT_FILE, METRICS_FILE, divergence_warning
from vcinr.meta.model import load_model
from vcinr.meta.rollback import SpikeGuard
from vcinr.storage import load_state
from vcinr.training import train


class _NanGradient(torch.autograd.Function):
    """Zero in the forward pass, NaN in the backward pass: a finite loss with a non-finite gradient."""

    @staticmethod
    def forward(ctx, x):
        return torch.zeros_like(x)

    @staticmethod
    def backward(ctx, grad):
        return torch.full_like(grad, math.nan)


def poison(monkeypatch, bad_calls: set[int] | None, kind: str = "loss") -> list[int]:
    """Make the meta-loss non-finite (or, ``kind="spike"``, jump) at the given call numbers (all when ``None``)."""
    real = training.meta_loss_function
    calls: list[int] = []

    def factory(model, compile_=False):
        loss_fn = real(model, compile_)

        def meta_loss(*args, **kwargs):
            calls.append(len(calls))
            loss = loss_fn(*args, **kwargs)
            if bad_calls is None or calls[-1] in bad_calls:
                if kind == "spike":  # finite, a hundred times larger: a jump out of the basin
                    loss = loss * 100.0
                else:
                    loss = loss * math.inf if kind == "loss" else loss + _NanGradient.apply(loss)
            return loss

        return meta_loss

    monkeypatch.setattr(training, "meta_loss_function", factory)
    return calls


@pytest.mark.parametrize("kind", ["loss", "gradient"])
def test_non_finite_steps_are_skipped_and_logged(tiny_config, data_dir, tmp_path, monkeypatch, kind):
    config = tiny_config("cifar10", data_dir / "cifar10", steps=5, max_items=16, batch_size=4, inner_steps=1)
    calls = poison(monkeypatch, {1, 2}, kind)
    out = tmp_path / "run"
    result = train(config, out, progress=False)
    assert result.steps == 5 and len(calls) == 7  # two calls were skipped, five applied
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    events = [r for r in records if "event" in r]
    assert [r["step"] for r in events] == [1, 1] and all("non-finite" in r["event"] for r in events)
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3, 4, 5]
    assert all(math.isfinite(r["loss"]) for r in records if "loss" in r)
    assert all(torch.isfinite(p).all() for p in load_model(out).model.parameters())


def test_a_run_that_keeps_diverging_stops_with_one_line(tiny_config, data_dir, tmp_path, monkeypatch):
    config = tiny_config("cifar10", data_dir / "cifar10", steps=6, max_items=16, batch_size=4, inner_steps=1)
    config.train.checkpoint_every = 2
    out = tmp_path / "run"
    train(config, out, progress=False)  # 6 good steps
    good = load_state(out / CHECKPOINT_FILE)[0]

    config.train.steps = 20
    calls = poison(monkeypatch, None)
    with pytest.raises(ModelError, match=f"diverged: {training.MAX_BAD_STEPS} non-finite steps in a row at step 6"):
        train(config, out, progress=False)
    assert len(calls) == training.MAX_BAD_STEPS
    tensors, scalars = load_state(out / CHECKPOINT_FILE)
    assert scalars["step"] == 6 and all(torch.equal(tensors[k], good[k]) for k in good)  # untouched
    assert all(torch.isfinite(v).all() for v in tensors.values() if v.is_floating_point())


def test_diverging_run_is_a_one_line_cli_error(tiny_config, data_dir, tmp_path, monkeypatch, capsys):
    import yaml

    config = tiny_config("cifar10", data_dir / "cifar10", steps=3, max_items=16, batch_size=4, inner_steps=1)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(json.loads(json.dumps(config.to_dict()))))
    poison(monkeypatch, None, "gradient")
    assert main(["train", "--config", str(path), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "training diverged" in err and "Traceback" not in err
    assert not (tmp_path / "run" / "model.safetensors").exists()


# --- divergence without non-finite numbers: the loss jumps, or the run gets worse and settles ---


def test_spike_guard_fires_on_a_jump_of_the_median_not_on_one_bad_batch():
    guard = SpikeGuard(factor=5.0, interval=10, recent=4, reference=20)
    losses = [1.0 + 0.5 * (step % 3) for step in range(40)]
    losses[30] = 50.0  # one hard batch
    for step, loss in enumerate(losses):
        guard.observe(step, loss)
        assert not guard.spiked()
        guard.keep(step + 1, *_state())
    for step in range(40, 44):  # then every loss is ten times larger
        guard.observe(step, 10.0)
    assert guard.spiked()
    snapshot = guard.rollback()
    assert snapshot.step == 30  # the older of the two copies kept (steps 30 and 40)
    assert not guard.spiked()  # the losses after step 30 are forgotten


def _state():
    model = torch.nn.Linear(2, 2)
    return model, torch.optim.Adam(model.parameters()), torch.Generator(), None


def test_a_loss_jump_rolls_the_run_back_at_half_the_learning_rate(tiny_config, data_dir, tmp_path, monkeypatch):
    config = tiny_config("cifar10", data_dir / "cifar10", steps=30, max_items=16, batch_size=4, inner_steps=1)
    monkeypatch.setattr(training, "SpikeGuard", functools.partial(SpikeGuard, interval=5, recent=3, reference=8))
    calls = poison(monkeypatch, {20, 21}, "spike")  # the losses of the states after 20 and 21 steps jump
    out = tmp_path / "run"
    result = train(config, out, progress=False)
    # the second jumped loss lifts the median of the last 3: back to the copy at step 15 (of 15 and 20)
    assert result.steps == 30 and len(calls) == 22 + 15
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    events = [r for r in records if "event" in r]
    assert len(events) == 1 and events[0]["step"] == 15
    assert events[0]["event"] == "loss median jumped at step 21; rolled back to step 15, outer lr now x0.5"
    steps = [r["step"] for r in records if "loss" in r]
    assert steps == list(range(1, 31))  # the abandoned steps' records are gone
    lrs = {r["step"]: r["lr"] for r in records if "lr" in r}
    assert lrs[16] == pytest.approx(lrs[15] / 2)
    assert load_state(out / CHECKPOINT_FILE)[1]["lr_scale"] == 0.5


def test_a_resumed_run_is_guarded_from_its_first_step(tiny_config, data_dir, tmp_path, monkeypatch):
    config = tiny_config("cifar10", data_dir / "cifar10", steps=12, max_items=16, batch_size=4, inner_steps=1)
    monkeypatch.setattr(training, "SpikeGuard", functools.partial(SpikeGuard, interval=5, recent=3, reference=8))
    out = tmp_path / "run"
    train(config, out, progress=False)
    config.train.steps = 20
    calls = poison(monkeypatch, {1, 2}, "spike")  # the resumed process's calls: the states after 13 and 14 steps
    result = train(config, out, progress=False)
    # without the logged losses the guard would see 3 losses, not the 11 it compares, and miss the jump
    assert result.steps == 20 and len(calls) == 3 + 8
    events = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if "event" in line]
    assert [e["event"] for e in events] == ["loss median jumped at step 14; rolled back to step 12, outer lr now x0.5"]


def test_a_run_whose_loss_keeps_jumping_stops_with_one_line(tiny_config, data_dir, tmp_path, monkeypatch):
    config = tiny_config("cifar10", data_dir / "cifar10", steps=200, max_items=16, batch_size=4, inner_steps=1)
    config.train.max_rollbacks = 1
    monkeypatch.setattr(training, "SpikeGuard", functools.partial(SpikeGuard, interval=5, recent=3, reference=8))
    poison(monkeypatch, set(range(20, 200)), "spike")
    with pytest.raises(ModelError, match="training diverged: the loss jumped 2 times"):
        train(config, tmp_path / "run", progress=False)


def test_divergence_warning_compares_the_final_validation_with_the_best(tmp_path):
    records = [{"step": 0, "val_psnr": 15.4}, {"step": 5, "loss": 0.1}, {"step": 1500, "val_psnr": 21.13},
               {"step": 2000, "val_psnr": 13.2}]
    (tmp_path / METRICS_FILE).write_text("".join(json.dumps(r) + "\n" for r in records))
    warning = divergence_warning(tmp_path, {"loss": 0.05, "psnr": 13.17})
    assert "peaked at 21.13 dB (step 1500) and ended at 13.17 dB" in warning and "train.outer_lr" in warning
    assert divergence_warning(tmp_path, {"loss": 0.01, "psnr": 20.5}) is None  # within 1 dB of the best
    assert divergence_warning(tmp_path / "missing", {"psnr": 1.0}) is None
    (tmp_path / METRICS_FILE).write_text(json.dumps({"step": 0, "val_accuracy": 0.97}) + "\n")
    assert "0.90" in divergence_warning(tmp_path, {"accuracy": 0.90})


def test_cli_warns_when_validation_ends_far_below_its_best(tiny_config, data_dir, tmp_path, monkeypatch, capsys):
    import yaml

    config = tiny_config("cifar10", data_dir / "cifar10", steps=4, max_items=16, batch_size=4, inner_steps=1)
    config.train.eval_every = 2
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(json.loads(json.dumps(config.to_dict()))))
    assert main(["train", "--config", str(path), "--out", str(tmp_path / "good"), "--quiet"]) == 0
    assert "warning" not in capsys.readouterr().err  # a run that improves says nothing

    real, calls = training.evaluate, []

    def worsening(*args, **kwargs):  # the real evaluation, reported 3 dB lower at every call
        calls.append(1)
        result = real(*args, **kwargs)
        return {**result, "psnr": result["psnr"] + 10.0 - 3.0 * len(calls)}

    monkeypatch.setattr(training, "evaluate", worsening)
    assert main(["train", "--config", str(path), "--out", str(tmp_path / "bad"), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "vcinr train: warning: validation psnr peaked" in err and "(step 0)" in err
    assert (tmp_path / "bad" / "model.safetensors").exists()  # the last model is still written
