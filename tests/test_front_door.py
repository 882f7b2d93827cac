"""What a new user meets first: runs that cannot overwrite each other, resume from the run directory, and every
bad input a one-line error (as the user sees it: the last line of stderr, no traceback)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rl.checkpoint import write_atomic
from rl.config import parse_config

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


def script(name, *args, timeout=300):
    return subprocess.run([sys.executable, str(ROOT / name), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=ENV)


def one_line_error(proc) -> str:
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    return proc.stderr.strip().splitlines()[-1]


def main_error(name, *args) -> str:
    """The one-line error of an entry script's main(), run in this process (the subprocess check of the same script
    in each test shows that such an error reaches the user as one line)."""
    import importlib
    with pytest.raises(SystemExit) as e:
        importlib.import_module(name.removesuffix(".py")).main(list(args))
    return str(e.value.code)


def error_of(argv) -> str:
    with pytest.raises(SystemExit) as e:
        parse_config(argv)
    return str(e.value.code)


@pytest.mark.parametrize("argv, expected", [
    (["--prompts-per-step", "0"], "--prompts-per-step 0: must be at least 1"),
    (["--n-samples", "0"], "--n-samples 0: must be at least 1"),
    (["--estimator", "grpo", "--n-samples", "1"], "--n-samples 1: grpo compares samples of one prompt"),
    (["--max-new-tokens", "0"], "--max-new-tokens 0: must be at least 1"),
    (["--temperature", "0"], "--temperature 0.0: must be a positive number"),
    (["--top-p", "1.5"], "--top-p 1.5: must lie in (0, 1]"),
    (["--attn", "banana"], "--attn banana: expected one of sdpa, eager, flash_attention_2"),
    (["--device", "tpu"], "--device tpu: expected auto, cpu, cuda or cuda:N"),
    (["--reward", "nope"], "--reward nope: expected one of r1_math"),
    (["--data", "nonsense"], "--data nonsense: unknown data set"),
    (["--data", "sokoban:many"], "--data sokoban:many: expected 'sokoban:N'"),
    (["--data", "missing.jsonl"], "--data missing.jsonl: no such file"),
    (["--actor-lr", "-1"], "--actor-lr -1.0: must be a positive number"),
    (["--adam-betas", "0.9", "1.0"], "--adam-betas 0.9 1.0: both must lie in [0, 1)"),
    (["--old-logprobs", "sampler", "--truncated-end", "eos"], "--old-logprobs sampler: the sampler drew no end token"),
    (["--max-image-pixels", "-1"], "--max-image-pixels -1: must be at least 0"),
    (["--image-root", "no/such/folder"], "--image-root no/such/folder: not a directory"),
    (["--model", "/no/such/dir"], "--model/--init /no/such/dir: no such checkpoint directory"),  # before any import
    (["--model", "tests"], "--model/--init tests: the directory has no config.json"),
    # the objective (rl/losses.py): combinations that have no meaning
    (["--loss", "cispo", "--estimator", "gae"], "--loss cispo --estimator gae: cispo is defined for one outcome"),
    (["--clip-high", "-0.1"], "--clip-high -0.1: must be a number >= 0"),
    (["--clip-delta", "1.1"], "--clip-delta 1.1: must exceed 1 + the upper clip epsilon"),
    (["--loss", "sapo", "--clip-delta", "2"], "--clip-delta 2.0: --loss sapo has no clipped ratio to cap"),
    (["--kl-bias-correction"], "--kl-bias-correction: corrects a KL term in the loss; it needs --kl-in loss"),
    (["--scale-rewards", "group", "--estimator", "gae"], "--scale-rewards group --estimator gae: the critic's"),
    (["--rollout-correction", "token-mask", "--engine", "hf"], "--rollout-correction token-mask: needs the sampler"),
    (["--correction-cap", "0"], "--correction-cap 0.0: must be a number above --correction-floor"),
    (["--dynamic-sampling", "2", "--n-samples", "1"], "--dynamic-sampling 2: a group of one sample is never"),
    (["--overlong-buffer", "24"], "--overlong-buffer 24: must be below --max-new-tokens 24"),
    (["--sapo-temperatures", "1", "0"], "--sapo-temperatures 1.0 0.0: both must be positive"),
])
def test_bad_flag_values_are_one_line_errors(argv, expected):
    assert error_of(["--preset", "debug", *argv]).startswith("error: " + expected)


def test_bad_flag_as_the_user_sees_it():
    assert one_line_error(script("train_fre.py", "--preset", "debug", "--n-samples", "0")) == \
        "error: --n-samples 0: must be at least 1"
    for name in ("train_fre.py", "eval.py"):  # what argparse refuses: one line too, no usage before it
        proc = script(name, "--bogus")
        assert proc.returncode == 2 and proc.stderr == f"error: unrecognized arguments: --bogus (python {name} " \
                                                      f"--help lists every flag)\n"


def test_list_presets_one_line_each_with_its_script_and_purpose(capsys):
    from rl.config import PRESETS

    with pytest.raises(SystemExit):
        parse_config(["--list-presets"])
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list(PRESETS)
    assert all(line.split()[1] in ("train_fre.py", "train_mgt.py") and len(line.split()) > 3 for line in lines)
    assert lines[0].split()[:2] == ["fre-text", "train_fre.py"] and "mgt-geo" in lines[6]


def _fake_run(run: Path, **config) -> Path:
    run.mkdir(parents=True)
    cfg = parse_config(["--preset", "debug", "--out", str(run), *sum(([f"--{k}", str(v)] for k, v in config.items()),
                                                                       [])])
    (run / "config.json").write_text(cfg.to_json())
    (run / "metrics.jsonl").write_text("")
    for step in (2, 4):
        write_atomic(run / "checkpoints" / f"step_{step}", _fake_checkpoint)
    return run


def _fake_checkpoint(d: Path):
    """The files of a whole checkpoint, as resume verifies them (rl.checkpoint.damage), without a model."""
    import torch
    from safetensors.torch import save_file

    (d / "config.json").write_text("{}")
    save_file({"w": torch.zeros(1)}, d / "model.safetensors")
    torch.save({}, d / "trainer_state.pt")
    (d / "trainer_state.json").write_text('{"step": 4, "update_step": 8, "counts": {}, "world_size": 1}')


def test_resume_restores_the_runs_config_and_refuses_what_breaks_exactness(tmp_path):
    run = _fake_run(tmp_path / "run", estimator="grpo", seed=7)
    cfg = parse_config(["--resume", str(run)])  # no other flag: the run's own config, not the fre-text preset
    assert (cfg.preset, cfg.estimator, cfg.seed, cfg.model) == ("debug", "grpo", 7, "tiny")
    assert cfg.resume == str(run / "checkpoints" / "step_4") and cfg.out == str(run)
    assert parse_config(["--resume", str(run), "--save-every", "9", "--reward-workers", "3"]).save_every == 9
    assert "--seed 1: the run was started with 7" in error_of(["--resume", str(run), "--seed", "1"])
    assert "drop --out" in error_of(["--resume", str(run), "--out", str(tmp_path / "elsewhere")])
    (run / "final").mkdir()
    (run / "final" / "config.json").write_text(json.dumps({"model_type": "qwen2_5_vl"}))
    assert f"--model {run / 'final'} (stage 1) or --init" in error_of(["--resume", str(run / "final")])


def test_resume_reads_an_older_runs_config(tmp_path):
    """A config.json written when --plan, --check-data (and their settings) were knobs and --engine was --rollout
    still resumes: the commands' keys are ignored, "rollout" is read as the engine."""
    run = _fake_run(tmp_path / "run", estimator="grpo")
    saved = json.loads((run / "config.json").read_text())
    saved.pop("engine")
    saved.pop("loss")
    saved.update(rollout="hf", policy_loss="grpo", loss_agg="seq-mean-token-mean", plan=False, gpu_mem_gb=80.0,
                 nproc=1, check_data=False, check_data_max_bad=0.01)
    (run / "config.json").write_text(json.dumps(saved))
    cfg = parse_config(["--resume", str(run)])
    assert (cfg.engine, cfg.estimator, cfg.seed, cfg.loss, cfg.loss_agg) == ("hf", "grpo", 42, "grpo",
                                                                             "seq-mean-token-mean")
    assert "--engine ours: the run was started with hf" in error_of(["--resume", str(run), "--rollout", "ours"])


def test_command_flags_are_checked_as_one_line():
    assert error_of(["--preset", "debug", "--plan", "--nproc", "0"]) == "error: --nproc 0: must be at least 1"
    assert error_of(["--preset", "debug", "--gpu-mem-gb", "0"]) == \
        "error: --gpu-mem-gb 0.0: must be a positive number"
    assert error_of(["--preset", "debug", "--check-data-max-bad", "2"]) == \
        "error: --check-data-max-bad 2.0: must lie in [0, 1]"


@pytest.mark.slow
def test_out_of_an_earlier_run_needs_resume_or_overwrite(tmp_path):
    run = _fake_run(tmp_path / "run")
    line = one_line_error(script("train_fre.py", "--preset", "debug", "--out", str(run)))
    assert line == f"error: --out {run}: holds an earlier run; continue it with --resume {run}, or start anew " \
                   f"with --overwrite (deletes it)"
    assert (run / "checkpoints" / "step_4").exists()  # untouched
    other = tmp_path / "notes"
    other.mkdir()
    (other / "thesis.tex").write_text("mine")
    assert "holds no run" in main_error("train_fre.py", "--preset", "debug", "--out", str(other))
    assert (other / "thesis.tex").read_text() == "mine"
    afile = tmp_path / "afile"
    afile.write_text("")
    assert main_error("train_fre.py", "--preset", "debug", "--out", str(afile)).endswith("is a file, not a directory")


@pytest.mark.slow
def test_overwrite_starts_anew(tmp_path):
    run = _fake_run(tmp_path / "run")
    proc = script("train_fre.py", "--preset", "debug", "--out", str(run), "--overwrite", "--max-steps", "1",
                  "--save-every", "0")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not (run / "checkpoints").exists() and (run / "final" / "model.safetensors").exists()
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1
    assert f"--overwrite: deleting the earlier run in {run}: checkpoints, config.json, metrics.jsonl" in proc.stderr


def test_missing_init_fails_before_any_level_is_generated(tmp_path):
    proc = script("train_mgt.py", "--domain", "sokoban", "--init", str(tmp_path / "nope"), "--out",
                  str(tmp_path / "o"))
    assert one_line_error(proc) == f"error: --model/--init {tmp_path / 'nope'}: no such checkpoint directory"
    assert "levels" not in proc.stderr


@pytest.mark.slow
def test_unreachable_hub_names_the_local_alternative(tmp_path):
    line = one_line_error(script("train_fre.py", "--model", "nobody/no-such-model", "--out", str(tmp_path / "a")))
    assert line.startswith("error: --model/--init nobody/no-such-model: cannot be loaded from the hub")
    assert line.endswith("--model path/to/dir")
    line = main_error("train_fre.py", "--preset", "debug", "--data", "nobody/no-such-data", "--out",
                      str(tmp_path / "b"))
    assert line.startswith("error: --data nobody/no-such-data: cannot be loaded") and "--data path/to/file.jsonl" in line


@pytest.mark.slow
def test_check_data_reports_before_any_model_loads(tmp_path):
    data = tmp_path / "d.jsonl"
    rows = [{"problem": "1+1?", "answer": "2"}, {"problem": "Which way?", "answer": "increasing"},
            {"problem": "x?", "answer": ""}, {"problem": "y?", "answer": "\\frac{1}{2}"}]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = ["--data", str(data), "--model", "nobody/not-loaded", "--check-data", "--out", str(tmp_path / "o")]
    proc = script("train_fre.py", *args)
    assert proc.returncode == 1
    assert "4 rows, 2 with problems (50.00%)" in proc.stdout, proc.stderr[-2000:]
    assert "gold_free_text: 1" in proc.stdout and f"{data}:2: 'increasing'" in proc.stdout
    assert "row_missing_answer: 1" in proc.stdout and f"{data}:3: " in proc.stdout
    assert one_line_error(proc).startswith("error: 50.00% of the rows have problems, above --check-data-max-bad")
    assert not (tmp_path / "o").exists()
    import train_fre
    train_fre.main([*args, "--check-data-max-bad", "0.5"])  # at the limit: no error


def test_empty_data_is_one_line(tmp_path):
    data = tmp_path / "empty.jsonl"
    data.write_text("")
    line = one_line_error(script("train_fre.py", "--preset", "debug", "--data", str(data), "--out",
                                 str(tmp_path / "o")))
    assert line == f"error: --data {data}: no usable rows (empty, or every row was skipped)"
    assert not (tmp_path / "o").exists()  # the failed run leaves no empty --out behind


def test_cpu_threads_are_chosen_and_said(monkeypatch):
    """A small model takes one thread on the CPU (more stall beside other work: bench/cpu_threads.py); a large one
    this process's share of the cores; --cpu-threads and OMP_NUM_THREADS decide when given."""
    from rl.dist import SMALL_MODEL, cpu_threads

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    assert cpu_threads(0, 3_000_000) == (1, "a model of 3.0M parameters; --cpu-threads N to choose")
    assert cpu_threads(0, SMALL_MODEL)[0] == 8
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # torchrun: two processes share the cores
    assert cpu_threads(0, SMALL_MODEL)[0] == 4
    assert cpu_threads(3, 1000) == (3, "--cpu-threads")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert cpu_threads(0, 1000) == (2, "OMP_NUM_THREADS")
    monkeypatch.setenv("OMP_NUM_THREADS", "")  # set but empty: as if unset
    assert cpu_threads(0, 1000)[0] == 1
    assert error_of(["--preset", "debug", "--cpu-threads", "-1"]) == "error: --cpu-threads -1: must be at least 0"
