"""The RL loop, one place for all state.

One step, as data:
    prompts -> rollout (n samples each) -> rewards -> old / reference log-probs (+ critic values)
    -> advantages -> PPO epochs over micro-batches -> optimizer steps -> one metrics line (+ checkpoint)

Parameters stay in fp32 (master weights) and the forward passes run under bf16 autocast on a GPU: with the paper's
learning rate of 4e-7, an Adam update is far below the resolution of a bf16 weight and would simply be lost.
"""

import copy
import json
import math
import random
import resource
import time
from collections import Counter
from pathlib import Path

import torch
from tqdm.auto import tqdm

import kernels
from rl import algos
from rl.batch import Rollout, encode_prompts, is_vision_model
from rl.config import Config
from rl.optim import lr_at, make_optimizer, optimizer_step
from rl.policy import Critic, load_policy, pad_token_id, response_logprobs, set_image_pixels, tokenizer_of
from rl.rollout import generate
from rl.tiny_model import build_tiny_checkpoint


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def pick_autocast_dtype(name: str, device: torch.device):
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    return {"bf16": torch.bfloat16, "fp32": None}[name]


def peak_memory_gb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def chunks(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i:i + size]


class Trainer:
    def __init__(self, cfg: Config, samples: list, reward_fn, log=print):
        if len(samples) < cfg.prompts_per_step:
            raise ValueError(f"{len(samples)} samples is fewer than --prompts-per-step {cfg.prompts_per_step}")
        self.cfg, self.samples, self.reward_fn, self.log = cfg, samples, reward_fn, log
        self.out = Path(cfg.out)
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "config.json").write_text(cfg.to_json())
        random.seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        self.device = pick_device(cfg.device)
        self.autocast_dtype = pick_autocast_dtype(cfg.dtype, self.device)

        base = cfg.model
        if base == "tiny":
            corpus = [s.question for s in samples[:256]]
            base = str(build_tiny_checkpoint(self.out / "base_model", corpus=corpus, seed=cfg.seed))
        self.base_model = base
        self.kernels = kernels.select(cfg.kernels, self.device, cfg.attn)
        self.log(self.kernels.reason)
        attn = self.kernels.attn_implementation
        self.policy, self.processor = load_policy(cfg.resume or base, torch.float32, attn, self.device)
        kernels.prepare_model(self.policy, self.kernels)
        self.tokenizer = tokenizer_of(self.processor)
        self.pad_id = pad_token_id(self.processor)
        set_image_pixels(self.processor, cfg.min_pixels, cfg.max_pixels)
        if cfg.freeze_vision and is_vision_model(self.policy):
            self.policy.model.visual.requires_grad_(False)
        if cfg.gradient_checkpointing:
            self.policy.activation_checkpointing_enable({"use_reentrant": False})

        # The reference model (the initial policy) exists only when it is used (kl > 0); frozen, compute dtype.
        self.ref = None
        if cfg.kl > 0:
            self.ref = kernels.prepare_model(load_policy(base, torch.float32, attn, self.device)[0], self.kernels) \
                if cfg.resume else copy.deepcopy(self.policy)
            self.ref.requires_grad_(False).eval()
            if self.autocast_dtype is not None:
                self.ref.to(self.autocast_dtype)
        self.critic = None
        if cfg.estimator == "gae":
            self.critic = Critic(self.policy).to(self.device)
            if cfg.freeze_vision and is_vision_model(self.policy):
                self.critic.backbone.visual.requires_grad_(False)

        self.rollout_size = cfg.prompts_per_step * cfg.n_samples
        self.updates_per_step = cfg.ppo_epochs * math.ceil(self.rollout_size / cfg.train_batch_size)
        steps_per_episode = len(samples) // cfg.prompts_per_step
        self.total_steps = cfg.episodes * steps_per_episode
        if cfg.max_steps:
            self.total_steps = min(self.total_steps, cfg.max_steps) if cfg.episodes else cfg.max_steps
        self.total_updates = self.total_steps * self.updates_per_step
        self.actor_params = [p for p in self.policy.parameters() if p.requires_grad]
        self.optimizer = make_optimizer(self.actor_params, cfg.actor_lr, tuple(cfg.adam_betas), cfg.weight_decay,
                                        cfg.optim)
        self.critic_params, self.critic_optimizer = [], None
        if self.critic is not None:
            self.critic_params = [p for p in self.critic.parameters() if p.requires_grad]
            self.critic_optimizer = make_optimizer(self.critic_params, cfg.critic_lr, tuple(cfg.adam_betas),
                                                   cfg.weight_decay, cfg.optim)
        self.step = 0
        self.update_step = 0
        self.counts = Counter()  # data problems seen so far (skipped prompts, unparseable gold answers, ...)
        if cfg.resume:
            self.load_state(Path(cfg.resume))

    # -- helpers -------------------------------------------------------------------------------------------------
    def autocast(self):
        if self.autocast_dtype is None:
            return torch.autocast(self.device.type, enabled=False)
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def prompts_for_step(self, step: int) -> list:
        """Sample order: a fresh seeded permutation per episode; the last incomplete batch is dropped."""
        per_episode = len(self.samples) // self.cfg.prompts_per_step
        episode, k = divmod(step, per_episode)
        order = list(range(len(self.samples)))
        random.Random(self.cfg.seed + episode).shuffle(order)
        idx = order[k * self.cfg.prompts_per_step:(k + 1) * self.cfg.prompts_per_step]
        return [self.samples[i] for i in idx]

    # -- one RL step ---------------------------------------------------------------------------------------------
    def make_experience(self, samples: list) -> tuple[Rollout, dict]:
        """Rollout -> rewards -> old / reference log-probs (+ critic values) -> advantages, held in one Rollout."""
        cfg, times = self.cfg, {}
        t = time.perf_counter()
        prompts, kept = [], []
        for s, row in zip(samples, encode_prompts(self.processor, samples)):
            if row["prompt_ids"].numel() > cfg.max_prompt_len:
                self.counts["data/prompt_too_long"] += 1
                continue
            prompts.append(row)
            kept.append(s)
        if not prompts:
            raise RuntimeError(f"every prompt of step {self.step} is longer than --max-prompt-len {cfg.max_prompt_len}")
        with self.autocast():
            rollout = generate(self.policy, self.processor, prompts, cfg.n_samples, cfg.temperature, cfg.top_p,
                               cfg.max_new_tokens, cfg.gen_batch_size)
        times["time/generate"] = time.perf_counter() - t

        t = time.perf_counter()
        texts = self.tokenizer.batch_decode(rollout.responses, skip_special_tokens=True)
        group = [s for s in kept for _ in range(cfg.n_samples)]
        scored = self.reward_fn(texts, [s.answer for s in group], [{**s.meta, "domain": s.domain} for s in group])
        self.counts.update(scored.counts)
        rewards = torch.tensor(scored.components["total"], dtype=torch.float32)
        times["time/reward"] = time.perf_counter() - t

        t = time.perf_counter()
        self.policy.eval()
        with torch.no_grad(), self.autocast():
            for idx in chunks(range(len(rollout)), cfg.micro_batch_size):
                batch = rollout.batch(idx, self.pad_id)
                logp, entropy = self.logprobs(self.policy, batch, with_entropy=True)
                rollout.store(idx, "old_logp", logp)
                rollout.store(idx, "entropy", entropy)
                rollout.store(idx, "ref_logp", self.logprobs(self.ref, batch)[0] if self.ref is not None else logp)
                if self.critic is not None:
                    rollout.store(idx, "old_values", self.critic(batch))
        times["time/logprob"] = time.perf_counter() - t

        mask = rollout.mask
        k1 = algos.kl_estimate(rollout.old_logp, rollout.ref_logp, "k1")
        kl = k1 if cfg.kl_estimator == "k1" else algos.kl_estimate(rollout.old_logp, rollout.ref_logp,
                                                                   cfg.kl_estimator)
        whiten = {"auto": None, "on": True, "off": False}[cfg.whiten]
        beta = cfg.kl if (self.ref is not None and cfg.kl_in == "reward") else 0.0
        rollout.advantages, rollout.returns = algos.compute_advantages(
            cfg.estimator, rewards, mask, cfg.n_samples, kl=kl, beta=beta, values=rollout.old_values,
            gamma=cfg.gamma, lam=cfg.lam, whiten_advantages=whiten)

        lengths = mask.sum(1).float()
        metrics = {f"reward/{k}": sum(v) / len(v) for k, v in scored.components.items() if k != "total"}
        metrics.update({
            "reward/mean": rewards.mean().item(),
            "response_len/mean": lengths.mean().item(),
            "response_len/max": lengths.max().item(),
            "response/truncated_frac": sum(not f for f in rollout.finished) / len(rollout),
            "kl": algos.masked_mean(k1, mask).item(),
            "entropy": algos.masked_mean(rollout.entropy, mask).item(),
            "prompt_len/mean": sum(p["prompt_ids"].numel() for p in prompts) / len(prompts),
            **times,
        })
        return rollout, metrics

    def train_on(self, rollout: Rollout) -> dict:
        """PPO epochs over the rollout; one optimizer step per train batch, micro-batches accumulate."""
        cfg = self.cfg
        self.policy.train()
        if self.critic is not None:
            self.critic.train()
        stats = {"loss/policy": [], "clip_frac": [], "approx_kl": [], "grad_norm": [], "loss/value": [],
                 "critic_grad_norm": [], "kernel/max_abs_diff": []}
        gen = torch.Generator().manual_seed(cfg.seed * 100003 + self.step)
        for _ in range(cfg.ppo_epochs):
            order = torch.randperm(len(rollout), generator=gen).tolist()
            for train_idx in chunks(order, cfg.train_batch_size):
                for k, idx in enumerate(chunks(train_idx, cfg.micro_batch_size)):
                    # The accumulated micro-batch losses add up to the loss of the whole train batch.
                    weight = algos.aggregate_weight(rollout.mask[idx], rollout.mask[train_idx], cfg.loss_agg)
                    batch = rollout.batch(idx, self.pad_id)
                    with self.autocast():
                        logp, _ = self.logprobs(self.policy, batch)
                    loss, st = self.policy_objective(logp, batch)
                    if cfg.kernel_check_every and k == 0 and self.update_step % cfg.kernel_check_every == 0:
                        stats["kernel/max_abs_diff"].append(self.kernel_check(batch, logp))
                    (loss * weight).backward()
                    stats["loss/policy"].append(loss.item())
                    stats["clip_frac"].append(st["clip_frac"])
                    stats["approx_kl"].append(st["approx_kl"])
                    if self.critic is not None:
                        with self.autocast():
                            values = self.critic(batch)
                        vloss = algos.value_loss(values, batch["old_values"], batch["returns"], batch["action_mask"],
                                                 cfg.value_clip, cfg.loss_agg)
                        (vloss * weight).backward()
                        stats["loss/value"].append(vloss.item())
                lr = self.lr_at(cfg.actor_lr)
                stats["grad_norm"].append(optimizer_step(self.optimizer, self.actor_params, lr, cfg.grad_clip))
                if self.critic is not None:
                    stats["critic_grad_norm"].append(optimizer_step(
                        self.critic_optimizer, self.critic_params, self.lr_at(cfg.critic_lr), cfg.grad_clip))
                self.update_step += 1
        out = {k: sum(v) / len(v) for k, v in stats.items() if v}
        out["lr"] = lr
        return out

    def lr_at(self, base_lr: float) -> float:
        return lr_at(self.update_step, self.total_updates, base_lr, self.cfg.warmup_ratio, self.cfg.min_lr_ratio)

    def logprobs(self, model, batch, with_entropy=False):
        return response_logprobs(model, batch, self.cfg.temperature, with_entropy, self.cfg.logprob_chunk,
                                 logprobs_fn=self.kernels.logprobs)

    def policy_objective(self, logp, batch) -> tuple[torch.Tensor, dict]:
        """Clipped PPO surrogate (+ beta * KL when the KL is a loss term), aggregated; with its statistics."""
        cfg, mask = self.cfg, batch["action_mask"]
        beta = cfg.kl if (self.ref is not None and cfg.kl_in == "loss") else 0.0
        per_token = self.kernels.policy_loss(logp, batch["old_logp"], batch["advantages"], mask, batch["ref_logp"],
                                             cfg.eps_clip, beta, cfg.kl_estimator)
        return (algos.aggregate(per_token, mask, cfg.loss_agg),
                algos.policy_stats(logp, batch["old_logp"], batch["advantages"], mask, cfg.eps_clip))

    def kernel_check(self, batch, logp) -> float:
        """Shadow check: the same micro-batch through the torch references (attention and log-prob)."""
        cfg, mask = self.cfg, batch["action_mask"]
        with torch.no_grad(), self.autocast(), kernels.reference_attention(self.policy, self.kernels, cfg.attn):
            ref, _ = response_logprobs(self.policy, batch, cfg.temperature, False, cfg.logprob_chunk)
        diff = (logp.detach().float() - ref.float()).abs()[mask].max().item() if mask.any() else 0.0
        tol = cfg.kernel_check_tol or (1e-3 if self.autocast_dtype is None else 5e-2)
        if not diff <= tol:
            raise RuntimeError(f"kernel check failed at update {self.update_step}: log-probs of the "
                               f"{self.kernels.name} kernels differ from the torch references by {diff:.3g} > "
                               f"{tol:g}; rerun with --kernels torch")
        return diff

    # -- outputs -------------------------------------------------------------------------------------------------
    def save(self, path: Path, resumable: bool = True):
        """A Hugging Face checkpoint (model + processor) that from_pretrained loads; beside it the critic and,
        to resume exactly, the optimizer states and random number generator states."""
        path.mkdir(parents=True, exist_ok=True)
        self.policy.save_pretrained(path)
        self.processor.save_pretrained(path)
        if self.critic is not None:
            torch.save(self.critic.state_dict(), path / "critic.pt")
        if resumable:
            torch.save({"optimizer": self.optimizer.state_dict(),
                        "critic_optimizer": self.critic_optimizer.state_dict() if self.critic_optimizer else None,
                        "torch_rng": torch.get_rng_state(), "python_rng": random.getstate()},
                       path / "trainer_state.pt")
        (path / "trainer_state.json").write_text(json.dumps(
            {"step": self.step, "update_step": self.update_step, "base_model": self.base_model,
             "counts": dict(self.counts)}, indent=2))

    def load_state(self, path: Path):
        info = json.loads((path / "trainer_state.json").read_text())
        state = torch.load(path / "trainer_state.pt", weights_only=False)
        self.step, self.update_step = info["step"], info["update_step"]
        self.counts = Counter(info["counts"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.critic is not None:
            self.critic.load_state_dict(torch.load(path / "critic.pt"))
            self.critic_optimizer.load_state_dict(state["critic_optimizer"])
        torch.set_rng_state(state["torch_rng"])
        random.setstate(state["python_rng"])
        self.log(f"resumed from {path} at step {self.step}")

    def train(self) -> Path:
        cfg = self.cfg
        metrics_path = self.out / "metrics.jsonl"
        kept = []
        if self.step and metrics_path.exists():  # resuming: drop lines of steps after the checkpoint
            kept = [ln for ln in metrics_path.read_text().splitlines() if json.loads(ln)["step"] <= self.step]
        metrics_file = open(metrics_path, "w")
        metrics_file.writelines(line + "\n" for line in kept)
        bar = tqdm(total=self.total_steps, initial=self.step, desc="rl", unit="step", dynamic_ncols=True)
        try:
            while self.step < self.total_steps:
                t0 = time.perf_counter()
                rollout, metrics = self.make_experience(self.prompts_for_step(self.step))
                t = time.perf_counter()
                metrics.update(self.train_on(rollout))
                metrics["time/update"] = time.perf_counter() - t
                metrics["time/step"] = time.perf_counter() - t0
                metrics["tokens_per_s"] = rollout.mask.sum().item() / metrics["time/step"]
                metrics["mem/peak_gb"] = peak_memory_gb(self.device)
                metrics.update(self.counts)
                self.step += 1
                metrics = {"step": self.step, "update_step": self.update_step, **metrics}
                metrics_file.write(json.dumps(metrics) + "\n")
                metrics_file.flush()
                bar.update()
                bar.set_postfix(reward=f"{metrics['reward/mean']:.3f}", len=f"{metrics['response_len/mean']:.0f}")
                if cfg.save_every and self.step % cfg.save_every == 0:
                    self.save(self.out / "checkpoints" / f"step_{self.step}")
            final = self.out / "final"
            self.save(final, resumable=False)
            return final
        finally:
            bar.close()
            metrics_file.close()


def run(cfg: Config) -> Path:
    """Data + reward + trainer for one run; bad data is reported by file and line, not as a traceback."""
    import sys

    from data import DataError, load_dataset_by_name
    from rewards import get_reward

    try:
        samples = load_dataset_by_name(cfg.data, on_error=cfg.on_bad_row, max_samples=cfg.max_samples or None,
                                       seed=cfg.seed)
    except (FileNotFoundError, DataError) as e:
        raise SystemExit(f"error: {e}") from None
    print(f"{len(samples)} prompts from {cfg.data}; model {cfg.model}; preset {cfg.preset}", file=sys.stderr)
    reward_fn = get_reward(cfg.reward, workers=cfg.reward_workers, timeout=cfg.reward_timeout)
    try:
        final = Trainer(cfg, samples, reward_fn).train()
    finally:
        reward_fn.close()
    print(f"final checkpoint: {final}", file=sys.stderr)
    return final
