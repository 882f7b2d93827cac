"""One RL step of TRL's GRPOTrainer and of ours, same model, prompts and settings: per-phase wall and CPU time, peak
memory, and the ratios ours / TRL, against TRL as it runs on a CPU and against TRL's GPU-side LM-head path.

    pip install -r bench/requirements-trl.txt     # TRL is a bench-only dependency (see that file for a venv)
    python bench/vs_trl.py                        # image prompts and text-only prompts, the configuration below
    python bench/vs_trl.py --variants vl --new-tokens 32          # quicker
    python bench/vs_trl.py --trl-python /tmp/trlvenv/bin/python   # TRL installed in another environment
    python bench/vs_trl.py --sides trl-gpu,sampler                # ours against TRL's GPU-side LM-head path only
    python bench/vs_trl.py --heads                # the LM head alone at one micro-batch's shape, ours and TRL's

Configuration (the defaults): a Qwen2.5-VL with the real vocabulary (151,936) and a tiny body (hidden 256, 4 layers;
bench/generation.py builds it offline, random weights), 8 prompts (one image each; `text`: the same questions
without images) x 4 samples x 128 new tokens, temperature 1, GRPO advantages, KL 0.001 (k3, as a loss term, TRL's
`beta`), fp32, one torch thread, micro-batches of 4 samples, one optimizer step (lr 1e-6) per rollout with
bitsandbytes' 8-bit AdamW on both sides (our default; `--optim adamw` for torch's AdamW, TRL's default), gradient
checkpointing on. The reward (distinct characters / 10) is the same Python function on both sides.
Ours runs twice: old log-probs recomputed by a forward pass (`--old-logprobs recompute`, the paper) and taken from
the sampler (`sampler`). TRL skips the old log-prob forward itself in this configuration (one optimizer step per
generation, so its old log-probs equal the detached new ones).

TRL runs twice too. `trl`: as it runs on this machine. TRL 1.16 scores log-probs with its fused LM head
(`add_fused_lm_head`, trl/trainer/utils.py), which sends through the LM head only the positions that have a label
(the completion tokens) where Triton runs (CUDA, XPU), and every position (prompt, padding and completion) elsewhere.
`trl-gpu`: the same run with that one check, `trl.trainer.utils._use_triton`, answering True (gpu_head below), so
that only the completion tokens go through the head, as on a GPU. The log-probs are the same (tests/test_vs_trl.py);
the head's tiles still fold in torch, as ours runs its torch kernels here (that fold, a Triton kernel on a GPU,
costs more than the head's GEMMs on this CPU: `--heads`). Each TRL run reports the rows its LM head projected.

Each side runs in a fresh process. Phases (inclusive, per step): generate, reward, logprob (forward passes without
gradient: old and reference), update (forward + backward + optimizer step), optimizer (the optimizer's step() alone,
a part of update), step (all, including the glue).
CPU time is process time (all threads): stable when other jobs share the cores, unlike wall time. Peak memory is
the resident set high-water mark (VmHWM, reset at every phase boundary, so each phase gets the peak of its own
span), which includes the weights, the reference model, the optimizer states and the libraries; "at start" is the
resident memory when the step begins (libraries, policy and reference weights, no gradients or optimizer states yet).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
PHASES = ("generate", "reward", "logprob", "update", "optimizer", "step")
GiB = 2 ** 30
NO_TRL = ("TRL does not import in {python} ({error}). It is a bench-only dependency: pip install -r "
          "bench/requirements-trl.txt, into a separate environment if it would change the pinned packages "
          "(python -m venv /tmp/trlvenv --system-site-packages && /tmp/trlvenv/bin/pip install -r "
          "bench/requirements-trl.txt), then pass --trl-python /tmp/trlvenv/bin/python.")


# -- measurement ---------------------------------------------------------------------------------------------------
def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


class Phases:
    """Inclusive wall / CPU time and peak RSS per named phase. At every boundary the RSS high-water mark of the
    span since the last boundary is read, credited to every open phase, and reset (/proc/self/clear_refs)."""

    def __init__(self):
        self.wall, self.cpu, self.peak, self.calls, self.start = {}, {}, {}, {}, {}
        self.open = []  # [name, wall0, cpu0]

    def _boundary(self):
        hwm = _status_kib("VmHWM") * 1024
        for name, *_ in self.open:
            self.peak[name] = max(self.peak.get(name, 0), hwm)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")

    def enter(self, name):
        self._boundary()
        self.start.setdefault(name, _status_kib("VmRSS") * 1024)  # resident memory when the phase first starts
        self.open.append([name, time.perf_counter(), time.process_time()])

    def exit(self):
        self._boundary()
        name, wall, cpu = self.open.pop()
        self.wall[name] = self.wall.get(name, 0.0) + time.perf_counter() - wall
        self.cpu[name] = self.cpu.get(name, 0.0) + time.process_time() - cpu
        self.calls[name] = self.calls.get(name, 0) + 1

    def wrap(self, fn, name, when=lambda: True):
        def wrapped(*args, **kwargs):
            if not when() or any(o[0] == name for o in self.open):
                return fn(*args, **kwargs)
            self.enter(name)
            try:
                return fn(*args, **kwargs)
            finally:
                self.exit()
        return wrapped

    def result(self) -> dict:
        return {"wall": self.wall, "cpu": self.cpu, "peak": self.peak, "calls": self.calls, "start": self.start}


def spread_reward(texts: list[str]) -> list[float]:
    """Any reward with spread inside a group gives non-zero advantages."""
    return [len(set(t)) / 10 for t in texts]


# -- workers -------------------------------------------------------------------------------------------------------
def _samples(args, processor):
    from generation import bench_prompts
    samples, rows = bench_prompts(processor, args.prompts, text_only=args.variant == "text")
    return samples, [r["prompt_ids"].numel() for r in rows]


def worker_ours(args, phases: Phases) -> dict:
    import contextlib
    import dataclasses
    from types import SimpleNamespace

    from rl.config import preset
    from rl.run import make_trainer

    class Reward:
        def __call__(self, texts, golds, metas):
            return SimpleNamespace(components={"total": spread_reward(texts)}, counts={})

        def close(self):
            pass

    out = tempfile.mkdtemp()
    cfg = preset("debug", model=args.model, out=out, kernels="torch", prompts_per_step=args.prompts,
                 n_samples=args.n, max_new_tokens=args.new_tokens, max_prompt_len=4096, gen_batch_size=args.prompts,
                 train_batch_size=args.prompts * args.n, micro_batch_size=args.micro_batch, estimator="grpo",
                 kl=args.kl, kl_in="loss", kl_estimator="k3", gradient_checkpointing=True, optim=args.optim,
                 actor_lr=1e-6, min_pixels=28 * 28, max_pixels=112 * 112, max_steps=1, save_every=0, seed=0)
    cfg = dataclasses.replace(cfg, engine="ours", old_logprobs=args.old_logprobs)
    from rl.processor import load_processor
    samples, prompt_lens = _samples(args, load_processor(args.model))
    trainer = make_trainer(cfg, samples, Reward(), log=lambda *a: None)
    timed = trainer.phase  # the trainer's own phases: generate, reward, logprob

    @contextlib.contextmanager
    def phase(name, times):
        phases.enter(name)
        try:
            with timed(name, times):
                yield
        finally:
            phases.exit()

    trainer.phase = phase
    trainer.train_on = phases.wrap(trainer.train_on, "update")
    trainer.optimizer.step = phases.wrap(trainer.optimizer.step, "optimizer")
    phases.enter("step")
    rollout, metrics = trainer.make_experience(trainer.prompts_for_step(0))
    metrics.update(trainer.train_on(rollout))
    phases.exit()
    return {"prompt_tokens": prompt_lens, "completion_tokens": int(rollout.mask.sum()),
            "sampler_max_diff": metrics.get("logprob/sampler_max_diff"),
            "loss_in_forward": metrics.get("logprob/in_forward")}


def gpu_head(trl_utils) -> None:
    """TRL's fused LM head as on a GPU: its forward projects the labelled positions only (`compact`). Its one check
    of the device, `_use_triton(hidden_states.device)`, is the only use of that name in trl.trainer.utils; the chunked
    log-prob kernel keeps its own check (trl.kernels.chunked_logprob), so its tiles still fold in torch."""
    if not callable(getattr(trl_utils, "_use_triton", None)):
        raise SystemExit("trl-gpu: trl.trainer.utils._use_triton is gone (TRL changed since 1.16); see gpu_head")
    trl_utils._use_triton = lambda device: True


def count_head_rows(trl_utils, rows: list[int]) -> None:
    """Append the rows each call of TRL's fused LM head projects (forward only) to `rows`."""
    function = trl_utils._ChunkedLogProbFunction

    class Counted:
        @staticmethod
        def apply(hidden, *rest):
            rows.append(hidden.shape[0])
            return function.apply(hidden, *rest)

    trl_utils._ChunkedLogProbFunction = Counted


def worker_trl(args, phases: Phases) -> dict:
    import torch
    import trl.trainer.utils as trl_utils
    from datasets import Dataset
    from transformers import AutoModelForImageTextToText, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from data import load_image
    from rl.processor import load_processor

    processor = load_processor(args.model)
    processor.tokenizer.padding_side = "left"
    samples, prompt_lens = _samples(args, processor)
    rows = []
    for s in samples:  # the same system prompt, question and image as our rows
        row = {"prompt": [{"role": "system", "content": s.messages[0]["content"][0]["text"]},
                          {"role": "user", "content": s.question}]}
        if args.variant == "vl":
            row["image"] = load_image(s.images[0])
        rows.append(row)
    dataset = Dataset.from_list(rows)

    def reward(completions, **kwargs):
        return spread_reward([c[-1]["content"] if isinstance(c, list) else c for c in completions])

    head_rows = []
    count_head_rows(trl_utils, head_rows)
    if args.trl_head == "gpu":
        gpu_head(trl_utils)
    model = AutoModelForImageTextToText.from_pretrained(args.model, dtype=torch.float32, attn_implementation="sdpa")
    config = GRPOConfig(
        output_dir=tempfile.mkdtemp(), per_device_train_batch_size=args.micro_batch,
        gradient_accumulation_steps=args.prompts * args.n // args.micro_batch, num_generations=args.n,
        max_completion_length=args.new_tokens, temperature=1.0, top_p=1.0, top_k=0, beta=args.kl,
        learning_rate=1e-6, optim={"adamw_8bit": "adamw_bnb_8bit", "adamw": "adamw_torch"}[args.optim],
        bf16=False, fp16=False, use_cpu=True, gradient_checkpointing=True, max_steps=1, logging_steps=1, save_strategy="no", report_to=[],
        dataloader_num_workers=0, dataloader_pin_memory=False, seed=0, log_completions=False)
    trainer = GRPOTrainer(model=model, reward_funcs=reward, args=config, train_dataset=dataset,
                          processing_class=processor)
    completion_tokens = []

    def generate(prompts, _inner=trainer._generate):
        out = _inner(prompts)
        completion_tokens.append(sum(len(c) for c in out[1]))
        return out

    trainer._generate = phases.wrap(generate, "generate")
    trainer._calculate_rewards = phases.wrap(trainer._calculate_rewards, "reward")
    trainer._get_per_token_logps_and_entropies = phases.wrap(
        trainer._get_per_token_logps_and_entropies, "logprob", when=lambda: not torch.is_grad_enabled())
    # the update: every micro-batch's forward + backward (the first one also makes the experience, timed apart)
    # and the optimizer step
    trainer.training_step = phases.wrap(trainer.training_step, "update")

    class StepTimer(TrainerCallback):
        def on_step_begin(self, *a, **k):
            phases.enter("step")

        def on_pre_optimizer_step(self, *a, **k):
            phases.enter("optimizer")

        def on_optimizer_step(self, *a, **k):
            phases.exit()

        def on_step_end(self, *a, **k):
            phases.exit()

    trainer.add_callback(StepTimer())
    trainer.train()
    return {"prompt_tokens": prompt_lens, "completion_tokens": sum(completion_tokens), "head_rows": sum(head_rows)}


def worker_heads(args) -> dict:
    """The LM head alone at one micro-batch's shape (micro-batch x new tokens response rows, the bench model's width
    and vocabulary): the bare logits GEMM; ours, the torch paths the bench runs at the config's chunk: the loss
    gradient in the forward (the update's path for token-level losses) and the log-probs whose backward recomputes
    the logits; TRL's chunked log-prob function (its folds in torch ops: its path without Triton), forward +
    backward as in a training forward, and forward without gradient as in its reference forward. CPU s, best of 3."""
    import torch
    from transformers import AutoConfig
    from trl.kernels import ChunkedLogProbFunction

    from lmm_kernels.logprob import logprob_loss_from_hidden, logprobs_from_hidden
    from rl.config import preset

    text = AutoConfig.from_pretrained(args.model).get_text_config()
    rows, chunk = args.micro_batch * args.new_tokens, preset("debug", model=args.model, out="-").logprob_chunk
    g = torch.Generator().manual_seed(0)
    hidden, weight = torch.randn(rows, text.hidden_size, generator=g), torch.randn(text.vocab_size,
                                                                                   text.hidden_size, generator=g) / 50
    targets = torch.randint(0, text.vocab_size, (rows,), generator=g)

    def backward(fn):
        h, w = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
        fn(h, w)[0].sum().backward()

    def trl_head(h, w, outputs=("log_probs", "entropy")):  # as TRL's training forward asks for it
        return ChunkedLogProbFunction.apply(h, w, None, targets, 1.0, 32768, None, 1.0, outputs)

    def best(fn):
        fn()
        times = []
        for _ in range(3):
            start = time.process_time()
            fn()
            times.append(time.process_time() - start)
        return min(times)

    with torch.no_grad():
        gemm = best(lambda: hidden @ weight.t())
        trl_forward = best(lambda: trl_head(hidden, weight, ("log_probs",)))
    return {"rows": rows, "hidden": text.hidden_size, "vocab": text.vocab_size, "chunk": chunk, "times": {
        "one logits GEMM": gemm,
        "ours, loss gradient in the forward": best(lambda: backward(
            lambda h, w: logprob_loss_from_hidden(h, w, targets, lambda logp, rows: -logp, 1.0, chunk_size=chunk))),
        "ours, forward + backward (recomputed)": best(lambda: backward(
            lambda h, w: logprobs_from_hidden(h, w, targets, 1.0, with_entropy=False, chunk_size=chunk))),
        "TRL, forward + backward (with entropy)": best(lambda: backward(trl_head)),
        "TRL, forward without gradient": trl_forward}}


def worker(args):
    import torch
    torch.set_num_threads(args.threads)
    if args.worker == "heads":
        return Path(args.json).write_text(json.dumps(worker_heads(args)))
    phases = Phases()
    extra = worker_trl(args, phases) if args.worker == "trl" else worker_ours(args, phases)
    result = phases.result()
    if args.worker == "trl":
        # TRL makes the experience inside the first micro-batch's training_step: count it there, not in the update;
        # the optimizer step (outside training_step) belongs to the update.
        for key in ("wall", "cpu"):
            inner = sum(result[key].get(p, 0.0) for p in ("generate", "reward", "logprob"))
            result[key]["update"] = result[key]["update"] - inner + result[key].get("optimizer", 0.0)
        result["peak"]["update"] = max(result["peak"].get("update", 0), result["peak"].get("optimizer", 0))
    result.update(extra, side=args.worker if args.worker == "trl" else f"ours ({args.old_logprobs})")
    Path(args.json).write_text(json.dumps(result))


# -- driver --------------------------------------------------------------------------------------------------------
def run_side(args, python: str, side: str, variant: str, model: str, old_logprobs: str = "sampler",
             trl_head: str = "cpu") -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = f.name
    cmd = [python, str(Path(__file__).resolve()), "--worker", side, "--variant", variant, "--model", model,
           "--json", out, "--old-logprobs", old_logprobs, "--trl-head", trl_head, "--prompts", str(args.prompts),
           "--n", str(args.n),
           "--new-tokens", str(args.new_tokens), "--kl", str(args.kl), "--micro-batch", str(args.micro_batch),
           "--threads", str(args.threads), "--optim", args.optim]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads),
           "TRITON_INTERPRET": "0"}
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{side} ({variant}) failed:\n{proc.stderr[-4000:]}")
    return json.loads(Path(out).read_text())


def trl_importable(python: str) -> str | None:
    proc = subprocess.run([python, "-c", "import trl; print(trl.__version__)"], capture_output=True, text=True,
                          cwd="/")
    if proc.returncode != 0:
        return None
    return proc.stdout.strip()


def table(results: list[dict]) -> str:
    """CPU s / wall s per phase and the step's peak, then every other side as a ratio against each TRL run."""
    width = 46
    lines = [f"{'':{width}}" + "".join(f"{p:>17}" for p in PHASES) + f"{'peak GiB':>10}{'at start':>10}"]
    for r in results:
        cells = "".join(f"{r['cpu'].get(p, 0):>8.1f} /{r['wall'].get(p, 0):>7.1f}" for p in PHASES)
        lines.append(f"{r['side']:{width}}{cells}{r['peak'].get('step', 0) / GiB:>10.2f}"
                     f"{r['start'].get('step', 0) / GiB:>10.2f}")
    baselines = [r for r in results if r["side"].startswith("trl")]
    for base in baselines:
        for r in results:
            if r is base or (r in baselines and baselines.index(r) < baselines.index(base)):
                continue
            ratio = "".join(f"{_ratio(r['cpu'].get(p), base['cpu'].get(p)):>8} /"
                            f"{_ratio(r['wall'].get(p), base['wall'].get(p)):>7}" for p in PHASES)
            memory = _ratio(r['peak']['step'], base['peak']['step'])
            lines.append(f"{r['side'] + ' / ' + base['side']:{width}}{ratio}{memory:>10}")
    return "\n".join(lines)


def _ratio(a, b) -> str:
    return f"{a / b:.2f}x" if a and b and b > 0.05 else "-"  # not for a phase that takes no time


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variants", default="vl,text", help="vl (one image per prompt), text (no images)")
    parser.add_argument("--sides", default="trl,trl-gpu,recompute,sampler",
                        help="trl (as it runs on a CPU: every position through the LM head), trl-gpu (its GPU-side "
                             "path: only the completion tokens through the head), and ours with old log-probs "
                             "recomputed / from the sampler")
    parser.add_argument("--trl-python", default=sys.executable, help="python of an environment with trl")
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--kl", type=float, default=0.001)
    parser.add_argument("--micro-batch", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--optim", default="adamw_8bit", choices=["adamw_8bit", "adamw"],
                        help="both sides: bitsandbytes 8-bit AdamW (our default) or torch AdamW (TRL's default)")
    parser.add_argument("--json-out", default="", help="also write all results to this file")
    parser.add_argument("--heads", action="store_true",
                        help="instead: the LM head alone at one micro-batch's shape, ours and TRL's (needs TRL)")
    parser.add_argument("--worker", choices=["trl", "ours", "heads"], help=argparse.SUPPRESS)
    parser.add_argument("--variant", default="vl", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--json", help=argparse.SUPPRESS)
    parser.add_argument("--old-logprobs", default="sampler", help=argparse.SUPPRESS)
    parser.add_argument("--trl-head", default="cpu", choices=["cpu", "gpu"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)

    sides = ["trl"] if args.heads else args.sides.split(",")
    unknown = set(sides) - {"trl", "trl-gpu", "recompute", "sampler"}
    if unknown:
        parser.error(f"--sides: unknown {', '.join(sorted(unknown))} (trl, trl-gpu, recompute, sampler)")
    if {"trl", "trl-gpu"} & set(sides):
        version = trl_importable(args.trl_python)
        if version is None:
            err = subprocess.run([args.trl_python, "-c", "import trl"], capture_output=True, text=True, cwd="/")
            raise SystemExit(NO_TRL.format(python=args.trl_python, error=err.stderr.strip().splitlines()[-1]))
    from generation import build_bench_checkpoint
    if args.heads:
        with tempfile.TemporaryDirectory() as tmp:
            r = run_side(args, args.trl_python, "heads", "vl", str(build_bench_checkpoint(Path(tmp) / "model")))
        gemm = r["times"]["one logits GEMM"]
        print(f"\nthe LM head alone: {r['rows']} response rows (one micro-batch) x vocabulary {r['vocab']:,}, hidden "
              f"{r['hidden']}, ours at chunk {r['chunk']}; CPU s, best of 3; in logits GEMMs")
        for name, t in r["times"].items():
            print(f"  {name:42}{t:>8.2f}{t / gemm:>8.1f}")
        return
    everything = {}
    with tempfile.TemporaryDirectory() as tmp:
        model = str(build_bench_checkpoint(Path(tmp) / "model"))
        for variant in args.variants.split(","):
            results = []
            for side in sides:
                if side in ("trl", "trl-gpu"):
                    head = "gpu" if side == "trl-gpu" else "cpu"
                    results.append(run_side(args, args.trl_python, "trl", variant, model, trl_head=head))
                    results[-1]["side"] = f"trl {version}, {head.upper()} head"
                else:
                    results.append(run_side(args, sys.executable, "ours", variant, model, old_logprobs=side))
                print(f"  {variant}: {results[-1]['side']} done ({results[-1]['cpu']['step']:.0f} CPU s)",
                      file=sys.stderr, flush=True)
            everything[variant] = results
            r0 = results[0]
            print(f"\n{variant}: {args.prompts} prompts ({'one image each' if variant == 'vl' else 'text only'}, "
                  f"{r0['prompt_tokens']} tokens) x {args.n} samples x {args.new_tokens} new tokens; CPU s / wall s "
                  f"per phase; completion tokens {[r['completion_tokens'] for r in results]}; TRL's head rows "
                  f"{[r['head_rows'] for r in results if 'head_rows' in r]}")
            print(table(results), flush=True)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(everything, indent=1))


if __name__ == "__main__":
    main()
