"""The classroom: problems with a text and an image form, the warm tiny model, a run that learns, classroom.py."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from data.synth.classroom import CELL, GEO_CELLS, STRIP_CELLS, classroom_samples

ROOT = Path(__file__).resolve().parents[1]


def _value(key: str) -> int:
    """The answer of a problem, recomputed from its key ('sum3:1,2,3' ...)."""
    kind, args = key.split(":")
    a = [int(x) for x in args.split(",")]
    return {"sum2": sum, "sum3": sum, "diff": lambda v: v[0] - v[1], "larger": max, "missing": lambda v: v[1],
            "rect": lambda v: 2 * (v[0] + v[1]), "tri": sum}[kind](a)


def test_problems_have_both_forms_right_answers_and_disjoint_splits():
    text, image = classroom_samples("text", 60, seed=3), classroom_samples("image", 60, seed=3)
    geo = classroom_samples("geo", 20, seed=3)
    assert [s.meta["id"] for s in text] == [s.meta["id"] for s in image]  # the same problems, two forms
    assert {s.meta["kind"] for s in text} == {"sum2", "sum3", "diff", "larger", "missing"}
    for s in text + image + geo:
        assert s.answer == str(_value(s.meta["id"]))
        assert s.meta["target"].endswith(f"<answer> \\boxed{{{s.answer}}} </answer>")
    assert not text[0].images and "What is" in text[0].question
    assert image[0].images[0].size == (STRIP_CELLS * CELL, CELL)
    assert geo[0].images[0].size == (GEO_CELLS * CELL, GEO_CELLS * CELL)
    # deterministic, and the held-out split shares no problem with the training split
    assert [s.meta["id"] for s in classroom_samples("text", 60, seed=3)] == [s.meta["id"] for s in text]
    assert image[0].images[0].tobytes() == classroom_samples("image", 1, seed=3)[0].images[0].tobytes()
    ids = {split: {s.meta["id"] for form in ("text", "geo") for s in classroom_samples(form, 400, seed=0, split=split)}
           for split in ("train", "val", "test")}  # the recipe was chosen on val; the study reports test
    assert all(ids.values()) and not ids["train"] & ids["test"] and not ids["train"] & ids["val"]
    assert not ids["val"] & ids["test"]
    assert image[0].meta["shows"] in image[0].meta["target"] and "shows" not in text[0].meta


def test_cache_builds_once_and_rebuilds_an_incomplete_or_damaged_model(tmp_path, monkeypatch):
    import rl.classroom_model as cm

    built, said = [], []

    def fake_build(path, seed, steps):
        built.append((seed, steps))
        (path / "model.safetensors").write_bytes(b"weights")
        (path / "warmup.json").write_text(json.dumps({"files": {"model.safetensors": cm._sha256(path / "model.safetensors")}}))

    monkeypatch.setattr(cm, "build", fake_build)
    first = cm.classroom_model(seed=5, cache=tmp_path, log=said.append)
    assert cm.classroom_model(seed=5, cache=tmp_path, log=said.append) == first and len(built) == 1
    (first / "warmup.json").unlink()  # as if a build had been killed before its end
    assert cm.classroom_model(seed=5, cache=tmp_path, log=said.append) == first and len(built) == 2
    assert "unusable (no warmup.json: an unfinished build): rebuilding it" in said[-2]
    (first / "model.safetensors").write_bytes(b"weighs")  # a damaged file
    assert cm.classroom_model(seed=5, cache=tmp_path, log=said.append) == first and len(built) == 3
    assert "unusable (model.safetensors is not the file the build wrote)" in said[-2]
    (first / "warmup.json").write_text("{")  # cut short
    assert cm.classroom_model(seed=5, cache=tmp_path, log=said.append) == first and len(built) == 4
    assert (first / "model.safetensors").read_bytes() == b"weights" and cm.damage(first) == ""
    assert cm.classroom_model(seed=5, cache=tmp_path, steps=3, log=lambda m: None).name.endswith("_steps3")
    assert built == [(5, cm.STEPS)] * 4 + [(5, 3)]


SEED = 1  # the warm model these tests build (the recipe as it is)


@pytest.fixture(scope="session")
def warm_cache(tmp_path_factory):
    """The real warm classroom model of SEED, built once per test run into a cache of its own (shared by the
    parallel workers under a lock: xdist may tear a session fixture down between tests)."""
    from filelock import FileLock

    from rl.classroom_model import classroom_model

    root = tmp_path_factory.getbasetemp()
    root = root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root  # the run's folder, above the workers'
    with FileLock(str(root / "classroom-cache.lock")):
        classroom_model(seed=SEED, cache=root / "classroom-cache", log=lambda m: None)
    return root / "classroom-cache"


@pytest.mark.slow
def test_warm_model_reads_but_guesses_and_a_classroom_run_raises_held_out_accuracy(warm_cache, tmp_path):
    """One test, so that one worker builds the warm model and uses it twice."""
    from evaluation import EvalSettings, evaluate
    from rl.classroom_model import classroom_model
    from rl.policy import load_policy

    # the warm model reads the drawn problems (the probe, measured by its build on held-out images) ...
    path = classroom_model(seed=SEED, cache=warm_cache)
    info = json.loads((path / "warmup.json").read_text())
    assert info["probe"] >= 0.95 and info["loss"][-1] < info["loss"][0] / 5
    # ... but mostly guesses: weak on both forms, the image form within 10 points of the text form
    model, processor = load_policy(str(path))
    settings = EvalSettings(max_new_tokens=48, batch_size=50, env_samples=200)
    results = evaluate(model, processor, ["classroom-text", "classroom-image"], settings, progress=False,
                       log=lambda m: None)
    acc = {name: b["accuracy"] for name, b in results["benchmarks"].items()}
    assert acc["classroom-text"] <= 0.3 and abs(acc["classroom-image"] - acc["classroom-text"]) <= 0.1, acc

    # a short run of the classroom preset from it: the reward rises, and held-out accuracy with it
    out = tmp_path / "run"
    env = {**os.environ, "LMM_R1_CACHE": str(warm_cache)}
    proc = subprocess.run([sys.executable, "train_fre.py", "--preset", "classroom", "--seed", str(SEED), "--out",
                           str(out), "--max-steps", "25", "--eval-limit", "100"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["step"] == 0 and "eval/classroom-text/accuracy" in rows[0]  # the "before"
    steps = [r for r in rows if r["step"] > 0]
    first, last = steps[:5], steps[-8:]

    def mean(rs, key):
        return sum(r[key] for r in rs) / len(rs)

    assert mean(last, "reward/format") > mean(first, "reward/format") + 0.05
    assert mean(last, "reward/mean") > mean(first, "reward/mean") + 0.08
    # it learns to work problems out: held-out text accuracy (measured, seed 1: 3 % -> 18 % at step 25)
    assert rows[-1]["eval/classroom-text/accuracy"] > rows[0]["eval/classroom-text/accuracy"] + 0.05
    assert "accuracy at step 0 -> step 25: classroom-text" in proc.stderr + proc.stdout
    assert (out / "plots" / "eval_accuracy.png").is_file() and (out / "final" / "config.json").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["dapo", "dr_grpo", "gspo"])
def test_each_named_loss_raises_the_classroom_reward(warm_cache, tmp_path, monkeypatch, loss):
    """--preset classroom --loss NAME learns as the default loss does (dapo with dynamic sampling, which reports
    the groups it dropped and the rounds it refilled). In this process: the worker has torch imported already."""
    import train_fre

    monkeypatch.setattr("data.io.DEFAULT_CACHE", warm_cache)  # where --model classroom finds the warm model
    out = tmp_path / "run"
    extra = ["--dynamic-sampling", "2"] if loss == "dapo" else []
    train_fre.main(["--preset", "classroom", "--seed", str(SEED), "--out", str(out), "--max-steps", "12",
                    "--eval-benchmarks", "", "--no-plots", "--loss", loss, *extra])
    steps = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(steps) == 12

    def mean(rs, key):
        return sum(r[key] for r in rs) / len(rs)

    assert mean(steps[-4:], "reward/format") > mean(steps[:4], "reward/format") + 0.04
    assert mean(steps[-4:], "reward/mean") > mean(steps[:4], "reward/mean") + 0.05
    if loss == "dapo":
        assert all("sampling/dropped_groups" in r and 8 <= r["sampling/groups"] <= 16 for r in steps)
        assert sum(r["sampling/dropped_groups"] for r in steps) > 0


@pytest.mark.slow
def test_lora_raises_the_classroom_reward(warm_cache, tmp_path, monkeypatch):
    """--preset classroom with LoRA (rank 16, a 10x larger lr, as LoRA wants): the format reward rises as with full
    fine-tuning (measured, seed 42, 12 steps: +0.13 against full fine-tuning's +0.12), the mean reward a little less
    (+0.06 against +0.10)."""
    import train_fre

    monkeypatch.setattr("data.io.DEFAULT_CACHE", warm_cache)
    out = tmp_path / "run"
    train_fre.main(["--preset", "classroom", "--seed", str(SEED), "--out", str(out), "--max-steps", "12",
                    "--eval-benchmarks", "", "--no-plots", "--lora-rank", "16", "--lora-alpha", "32", "--actor-lr",
                    "3e-3"])
    steps = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]

    def mean(rs, key):
        return sum(r[key] for r in rs) / len(rs)

    assert mean(steps[-4:], "reward/format") > mean(steps[:4], "reward/format") + 0.08
    assert mean(steps[-4:], "reward/mean") > mean(steps[:4], "reward/mean") + 0.02
    assert (out / "final" / "adapter" / "adapter_model.safetensors").is_file()


def test_verdict_weighs_the_gain_against_seeds_and_evaluation_noise():
    from classroom import effect, mean_sd, table, verdict

    assert mean_sd([0.1, 0.3]) == pytest.approx((0.2, 0.1414213), abs=1e-6)
    # +20 points on 200 items in each of 3 seeds: far above the noise
    assert effect([0.5, 0.55, 0.6], [0.3, 0.35, 0.4], n=200) == "appears"
    # +1.2 points, positive in every seed, but one evaluation of 200 items is noisier than that
    assert effect([0.112, 0.06, 0.13], [0.1, 0.048, 0.118], n=200).startswith("leans that way")
    assert effect([0.3, 0.2], [0.3, 0.25], n=200) == "does not appear"
    acc = {m: {s: [0.5, 0.7] for s in ("classroom-text", "classroom-image", "classroom-geo")}
           for m in ("base", "FRE-Text", "FRE-Multi", "MGT", "Direct-RL")}
    acc["MGT"]["classroom-geo"] = [0.9, 0.95]
    lines = verdict(acc, n=200)
    assert lines[0].startswith("1. Text-only RL lifts multimodal reasoning: does not appear. FRE-Text on the image "
                               "form vs the base: +0.0 points (sd 0.0, 0 of 2 seeds positive)")
    assert lines[1].startswith("2. Two stages beat direct multimodal RL: appears. MGT vs Direct-RL on geometry: "
                               "+32.5 points (sd 10.6, 2 of 2 seeds positive)")
    assert "| MGT | 60.0 ± 14.1 | 60.0 ± 14.1 | 92.5 ± 3.5 |" in table(acc, 2, "2 RL steps per run")


@pytest.mark.slow
def test_classroom_study_end_to_end_interrupted_and_continued(tmp_path, monkeypatch):
    import classroom

    out = tmp_path / "study"
    args = ["--seeds", "1", "--warmup-steps", "4", "--steps", "2", "--eval-items", "6", "--out", str(out), "--quiet"]
    # interrupted as MGT starts: FRE-Text and FRE-Multi are done, nothing is evaluated yet
    monkeypatch.setattr("data.io.DEFAULT_CACHE", tmp_path / "cache")
    monkeypatch.setenv("TQDM_DISABLE", "1")
    train_arm = classroom.train_arm

    def interrupted(arm, *a, **k):
        if arm == "MGT":
            raise KeyboardInterrupt
        return train_arm(arm, *a, **k)

    monkeypatch.setattr(classroom, "train_arm", interrupted)
    with pytest.raises(KeyboardInterrupt):
        classroom.main(args)
    assert (out / "seed0" / "FRE-Multi" / "final" / "config.json").is_file() and not (out / "results.md").exists()

    # continued, with each seed in a process of its own (--jobs): only MGT and Direct-RL are trained
    env = {**os.environ, "LMM_R1_CACHE": str(tmp_path / "cache")}
    cmd = [sys.executable, "classroom.py", *args, "--jobs", "2"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "== seed 0: FRE-Text" not in proc.stderr and "== seed 0: MGT from" in proc.stderr
    assert "%|" not in proc.stderr  # --quiet: no progress bar anywhere (warm-up, runs, evaluations)
    table = (out / "results.md").read_text()
    for row in ("| base |", "| FRE-Text |", "| FRE-Multi |", "| MGT |", "| Direct-RL |"):
        assert row in table
    assert "1. Text-only RL lifts multimodal reasoning:" in table and "2. Two stages beat direct multimodal RL:" in table
    assert "Perception probe of the warm models" in table
    results = json.loads((out / "results.json").read_text())
    assert set(results["accuracy"]) == {"base", "FRE-Text", "FRE-Multi", "MGT", "Direct-RL"}
    assert all(len(v) == 1 and 0 <= v[0] <= 1 for sets in results["accuracy"].values() for v in sets.values())
    assert len(results["probe"]) == 1 and 0 <= results["probe"][0] <= 1
    assert (out / "curves.png").stat().st_size > 0
    # MGT started from FRE-Text's final checkpoint, Direct-RL from the base model
    mgt = json.loads((out / "seed0" / "MGT" / "config.json").read_text())
    assert mgt["model"] == str(out / "seed0" / "FRE-Text" / "final")
    assert "classroom_model" in json.loads((out / "seed0" / "Direct-RL" / "config.json").read_text())["model"]
    # a third call reuses every run and evaluation
    again = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0 and "== seed 0: MGT" not in again.stderr
    assert (out / "results.md").read_text() == table
    # --probe: the warm models' perception probe and held-out accuracy (the base row), nothing trained
    monkeypatch.setattr(classroom, "train_arm", None)
    rows = classroom.main([*args, "--probe"])
    assert rows[0]["probe"] == results["probe"][0]
    assert rows[0]["classroom-text"] == results["accuracy"]["base"]["classroom-text"][0]


def test_preset_classroom_names_the_stage_of_each_script(capsys):
    import train_fre
    import train_mgt

    train_mgt.main(["--preset", "classroom", "--init", "classroom", "--plan"])
    assert "preset mgt-classroom" in capsys.readouterr().out  # stage 2: the drawn geometry
    train_fre.main(["--preset", "classroom", "--plan"])
    assert "memory plan: classroom, preset classroom," in capsys.readouterr().out
    from rl.config import preset

    assert preset("classroom").data.startswith("classroom-text") and preset("mgt-classroom").data.startswith(
        "classroom-geo") and preset("classroom-multi").data.startswith("classroom-image")
