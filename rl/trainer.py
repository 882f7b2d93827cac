"""The RL loop, one place for all state.

One step, as data:
    prompts -> rollout (n samples each) -> rewards -> old / reference log-probs (+ critic values)
    -> advantages -> PPO epochs over micro-batches -> optimizer steps -> one metrics line (+ checkpoint)

Parameters stay in fp32 (master weights) and the forward passes run under bf16 autocast on a GPU: with the paper's
learning rate of 4e-7, an Adam update is far below the resolution of a bf16 weight and would simply be lost.
"""

import contextlib
import copy
import json
import math
import os
import random
import resource
import sys
import time
from collections import Counter
from pathlib import Path

import torch
from tqdm.auto import tqdm

import kernels
from rl import algos, dist
from rl.batch import Rollout, encode_prompts, is_vision_model, micro_batches
from rl.checkpoint import CheckpointError, prune, write_atomic
from rl.config import Config
from rl.guards import NonFiniteGuard, StopRequest, watchdog
from rl.monitor import Monitor
from rl.offload import move, placed
from rl.optim import BF16_WEIGHTS, clip_grad_norm, local_shards, lr_at, make_optimizer, optimizer_step
from rl.policy import Critic, Scorer, load_policy, pad_token_id, set_image_pixels, tokenizer_of
from rl.rollout import generate
from rl.classroom_model import classroom_model
from rl.tiny_model import build_tiny_checkpoint


def pick_autocast_dtype(name: str, device: torch.device):
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    return {"bf16": torch.bfloat16, "fp32": None}[name]


def peak_memory_gb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def sampler_max_diff(logp: torch.Tensor, sampler_logp: torch.Tensor, mask: torch.Tensor) -> float:
    """Largest |log-prob of the training forward - log-prob the sampler drew with| over response tokens."""
    diff = (logp.detach().float().cpu() - sampler_logp.float().cpu()).abs()[mask.cpu()]
    return diff.max().item() if diff.numel() else 0.0


def json_line(metrics: dict) -> tuple[str, int]:
    """One line of strict JSON (no NaN / Infinity tokens): a non-finite number is written as null. Returns the line
    and how many values were not finite."""
    bad = {k for k, v in metrics.items() if isinstance(v, float) and not math.isfinite(v)}
    return json.dumps({k: None if k in bad else v for k, v in metrics.items()}, allow_nan=False), len(bad)


def chunks(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i:i + size]


def empty_as_query(texts: list[str], rollout: Rollout, tokenizer) -> list[str]:
    """--empty-response prompt, the released verifiers' `get_response_from_query(q) or q`: an empty (or blank)
    response text is replaced by its whole query q, the prompt and the response decoded with special tokens."""
    return [t if t.strip() else tokenizer.decode(torch.cat([row["prompt_ids"], row["response_ids"]]))
            for t, row in zip(texts, rollout.rows(range(len(rollout))))]


class Trainer:
    def __init__(self, cfg: Config, samples: list, reward_fn, log=print):
        if len(samples) < cfg.prompts_per_step:
            raise ValueError(f"{len(samples)} samples is fewer than --prompts-per-step {cfg.prompts_per_step}")
        self.cfg, self.samples, self.reward_fn = cfg, samples, reward_fn
        self.device = dist.setup(cfg.device)
        self.log = log if dist.is_main() else (lambda *a, **k: None)
        self.world, self.rank = dist.world(), dist.rank()
        for name, value in (("prompts-per-step", cfg.prompts_per_step), ("train-batch-size", cfg.train_batch_size)):
            if value % self.world:
                raise SystemExit(f"error: --{name} {value}: must be a multiple of the number of processes "
                                 f"({self.world})")
        self.out = Path(cfg.out)
        if dist.is_main():
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "config.json").write_text(cfg.to_json())
        random.seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        self.autocast_dtype = pick_autocast_dtype(cfg.dtype, self.device)

        base = cfg.model
        if base == "tiny":  # built by rank 0, read by all
            corpus = [s.question for s in samples[:256]]
            if dist.is_main():
                build_tiny_checkpoint(self.out / "base_model", corpus=corpus, seed=cfg.seed)
            dist.barrier()
            base = str(self.out / "base_model")
        elif base == "classroom":  # the warm tiny model of the classroom presets: cached, built once by rank 0
            if dist.is_main():
                classroom_model(cfg.seed, log=self.log)
            dist.barrier()
            base = str(classroom_model(cfg.seed))
        self.base_model = base
        self.kernels = kernels.select(cfg.kernels, self.device, cfg.attn, packed=cfg.max_tokens_per_micro > 0)
        self.log(self.kernels.reason)
        attn = self.kernels.attn_implementation
        weights = torch.bfloat16 if cfg.optim == BF16_WEIGHTS else torch.float32  # else fp32 master weights
        self.policy, self.processor = load_policy(cfg.resume or base, weights, attn, self.device)
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
            self.ref = kernels.prepare_model(load_policy(base, weights, attn, self.device)[0], self.kernels) \
                if cfg.resume else copy.deepcopy(self.policy)
            self.ref.requires_grad_(False).eval()
            if self.autocast_dtype is not None:
                self.ref.to(self.autocast_dtype)
        sharded = self.world > 1
        if self.ref is not None and cfg.ref_offload and not sharded:
            move(self.ref, torch.device("cpu"))  # visits the device in the log-prob phase only
        self.critic = None
        if cfg.estimator == "gae":
            # --freeze-vision freezes the actor's vision tower only, as the released --freeze_prefix does
            self.critic = Critic(self.policy, keep_vision_in_graph=sharded).to(self.device).requires_grad_(True)
            if cfg.resume:
                state = torch.load(Path(cfg.resume) / "critic.pt")
                if "value_head.bias" in state:  # before the value head followed the released one (no bias)
                    raise CheckpointError(f"{cfg.resume}: its critic has a value-head bias (an older version of this "
                                          "project wrote it); resume it with that version, or start anew")
                self.critic.load_state_dict(state)
        # The log-prob forwards as modules: with several processes each is an FSDP2 root over its layers.
        self.scorer = Scorer(self.policy, cfg.temperature, cfg.logprob_chunk, keep_vision_in_graph=sharded)
        self.ref_scorer = Scorer(self.ref, cfg.temperature, cfg.logprob_chunk, sharded) if self.ref else None
        if sharded:
            mixed = self.device.type == "cuda" and self.autocast_dtype is not None
            dist.shard(self.scorer, mixed)
            if self.ref_scorer is not None:
                dist.shard(self.ref_scorer, mixed_precision=False, offload=cfg.ref_offload)
            if self.critic is not None:
                dist.shard(self.critic, mixed, offload=cfg.critic_offload)

        self.packed = cfg.max_tokens_per_micro > 0
        self.rollout_size = cfg.prompts_per_step * cfg.n_samples
        self.updates_per_step = cfg.ppo_epochs * math.ceil(self.rollout_size / cfg.train_batch_size)
        steps_per_episode = len(samples) // cfg.prompts_per_step
        self.total_steps = cfg.episodes * steps_per_episode
        if cfg.max_steps:
            self.total_steps = min(self.total_steps, cfg.max_steps) if cfg.episodes else cfg.max_steps
        # The schedule's length: the released count, from the data set's size (it also counts the last, dropped
        # partial rollout); a run cut short by --max-steps spans its own updates.
        self.total_updates = self.total_steps * self.updates_per_step if cfg.max_steps else max(1, math.ceil(
            cfg.episodes * (len(samples) * cfg.n_samples // cfg.train_batch_size * cfg.ppo_epochs)))
        self.actor_params = [p for p in self.policy.parameters() if p.requires_grad]
        self.actor_shards = local_shards(self.actor_params)  # what this process updates
        self.optimizer = make_optimizer(self.actor_shards, cfg.actor_lr, tuple(cfg.adam_betas), cfg.weight_decay,
                                        cfg.optim)
        self.critic_params, self.critic_shards, self.critic_optimizer = [], [], None
        if self.critic is not None:
            self.critic_params = [p for p in self.critic.parameters() if p.requires_grad]
            self.critic_shards = local_shards(self.critic_params)
            self.critic_optimizer = make_optimizer(self.critic_shards, cfg.critic_lr, tuple(cfg.adam_betas),
                                                   cfg.weight_decay, cfg.optim)
        self.step = 0
        self.update_step = 0
        self.counts = Counter()  # data problems seen so far (skipped prompts, unparseable gold answers, ...)
        self.too_long: set[int] = set()  # prompts measured over --max-prompt-len: skipped without re-tokenizing
        self.guard = NonFiniteGuard(cfg.max_bad_steps)
        if cfg.resume:
            self.load_state(Path(cfg.resume))

    # -- helpers -------------------------------------------------------------------------------------------------
    def autocast(self):
        if self.autocast_dtype is None:
            return torch.autocast(self.device.type, enabled=False)
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    @contextlib.contextmanager
    def phase(self, name: str, times: dict):
        """Time a phase of the step into times["time/<name>"]; the watchdog logs stacks if it stalls."""
        t = time.perf_counter()
        with watchdog(name, self.cfg.stall_timeout, self.log):
            yield
        times[f"time/{name}"] = time.perf_counter() - t

    def prompts_for_step(self, step: int) -> list:
        """This process's share of the step's prompts. Sample order: a fresh seeded permutation per episode; the
        last incomplete batch is dropped."""
        per_episode = len(self.samples) // self.cfg.prompts_per_step
        episode, k = divmod(step, per_episode)
        order = list(range(len(self.samples)))
        random.Random(self.cfg.seed + episode).shuffle(order)
        idx = order[k * self.cfg.prompts_per_step:(k + 1) * self.cfg.prompts_per_step]
        share = len(idx) // self.world
        return [self.samples[i] for i in idx[self.rank * share:(self.rank + 1) * share]]

    # -- one RL step ---------------------------------------------------------------------------------------------
    def make_experience(self, samples: list) -> tuple[Rollout | None, dict]:
        """Rollout -> rewards -> old / reference log-probs (+ critic values) -> advantages, held in one Rollout
        (None when a reward is not finite: the step does not train)."""
        cfg, times = self.cfg, {}
        prompts, kept = [], []
        fresh = [s for s in samples if id(s) not in self.too_long]  # an oversized prompt is measured once
        self.counts["data/prompt_too_long"] += len(samples) - len(fresh)
        for s, row in zip(fresh, encode_prompts(self.processor, fresh)):
            if row["prompt_ids"].numel() > cfg.max_prompt_len:
                self.too_long.add(id(s))
                self.counts["data/prompt_too_long"] += 1
                continue
            prompts.append(row)
            kept.append(s)
        if not prompts:
            raise RuntimeError(f"every prompt of step {self.step} is longer than --max-prompt-len {cfg.max_prompt_len}")
        # The samples depend on the seed, the step and the prompt, not on how many processes share the step.
        seed = (cfg.seed * 1_000_003 + self.step) * 65_536 + self.rank * (cfg.prompts_per_step // self.world)
        with self.phase("generate", times), self.autocast(), dist.gathered(self.scorer), \
                placed(self.critic, torch.device("cpu"), self.critic_optimizer, enabled=cfg.critic_offload):
            rollout = generate(self.policy, self.processor, prompts, cfg.n_samples, cfg.temperature, cfg.top_p,
                               cfg.max_new_tokens, cfg.gen_batch_size, engine=cfg.rollout,
                               compile=cfg.compile_decode, seed=seed)

        if cfg.truncated_end == "eos":  # as released (Actor.process_sequences): a cut response ends in the end token
            for response, done in zip(rollout.responses, rollout.finished):
                if not done and response.numel():
                    response[-1] = self.tokenizer.eos_token_id
        with self.phase("reward", times):
            texts = self.tokenizer.batch_decode(rollout.responses, skip_special_tokens=True)
            if cfg.empty_response == "prompt":
                texts = empty_as_query(texts, rollout, self.tokenizer)
            group = [s for s in kept for _ in range(cfg.n_samples)]
            scored = self.reward_fn(texts, [s.answer for s in group], [{**s.meta, "domain": s.domain} for s in group])
        self.counts.update(scored.counts)
        rewards = torch.tensor(scored.components["total"], dtype=torch.float32)
        metrics = {f"reward/{k}": sum(v) / len(v) for k, v in scored.components.items() if k != "total"}
        finite = torch.isfinite(rewards)
        if dist.all_reduce_sum(torch.tensor([float((~finite).sum())])).item():  # a data error: counted; no training
            self.counts["guard/nonfinite_rewards"] += int((~finite).sum())
            self.guard.ok(False, "reward", f"step {self.step + 1}, phase 'reward'")
            return None, {**metrics, "reward/mean": rewards[finite].mean().item() if finite.any() else 0.0, **times}

        from_sampler = cfg.old_logprobs == "sampler"
        if from_sampler:  # the log-probs (and entropies) the sampler drew with: one forward pass fewer
            rollout.old_logp = rollout.sampler_logp.clone()
        self.policy.eval()
        with self.phase("logprob", times), torch.no_grad(), self.autocast(), \
                placed(self.ref, self.device, enabled=cfg.ref_offload):
            for idx, real in self.in_step(self.micro_batches(rollout, range(len(rollout)))):
                batch = rollout.batch(idx, self.pad_id, packed=self.packed)
                if from_sampler:
                    logp = batch["old_logp"]
                else:
                    logp, entropy = self.scorer(batch, self.kernels.logprobs, with_entropy=True)
                ref_logp = self.ref_scorer(batch, self.kernels.logprobs)[0] if self.ref is not None else logp
                values = self.critic(batch) if self.critic is not None else None
                if real:
                    if not from_sampler:
                        rollout.store(idx, "old_logp", logp)
                        rollout.store(idx, "entropy", entropy)
                    rollout.store(idx, "ref_logp", ref_logp)
                    if values is not None:
                        rollout.store(idx, "old_values", values)

        mask = rollout.mask
        k1 = algos.kl_estimate(rollout.old_logp, rollout.ref_logp, "k1")
        kl = k1 if cfg.kl_estimator == "k1" else algos.kl_estimate(rollout.old_logp, rollout.ref_logp,
                                                                   cfg.kl_estimator)
        whiten = {"auto": None, "on": True, "off": False}[cfg.whiten]
        beta = cfg.kl if (self.ref is not None and cfg.kl_in == "reward") else 0.0
        rollout.advantages, rollout.returns = algos.compute_advantages(
            cfg.estimator, rewards, mask, cfg.n_samples, kl=kl, beta=beta, values=rollout.old_values,
            gamma=cfg.gamma, lam=cfg.lam, whiten_advantages=whiten,
            all_reduce=dist.all_reduce_sum if self.world > 1 else None)  # whitened over every process's tokens

        lengths = mask.sum(1).float()
        metrics.update({
            "reward/mean": rewards.mean().item(),
            "response_len/mean": lengths.mean().item(),
            "response_len/max": lengths.max().item(),
            "response/truncated_frac": sum(not f for f in rollout.finished) / len(rollout),
            "kl": self.token_mean(k1, mask),
            "entropy": self.token_mean(rollout.entropy, mask),
            "prompt_len/mean": sum(p["prompt_ids"].numel() for p in prompts) / len(prompts),
            **times,
        })
        if cfg.rollout == "ours" and not from_sampler:
            metrics["logprob/sampler_max_diff"] = sampler_max_diff(rollout.old_logp, rollout.sampler_logp, mask)
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
        first_update, sampler_diff = self.update_step, []
        for _ in range(cfg.ppo_epochs):
            order = torch.randperm(len(rollout), generator=gen).tolist()
            for train_idx in chunks(order, cfg.train_batch_size // self.world):
                losses = []
                # The micro-batch losses add up to the loss of the whole train batch, over every process (whose
                # gradients FSDP averages: hence x world).
                whole = dist.all_reduce_sum(torch.tensor([algos.aggregate_count(rollout.mask[train_idx],
                                                                                cfg.loss_agg)])).item()
                for k, (idx, real) in enumerate(self.in_step(self.micro_batches(rollout, train_idx))):
                    weight = algos.aggregate_count(rollout.mask[idx], cfg.loss_agg) / max(whole, 1) * self.world \
                        if real else 0.0
                    batch = rollout.batch(idx, self.pad_id, packed=self.packed)
                    with self.autocast():
                        logp, _ = self.scorer(batch, self.kernels.logprobs)
                    if cfg.old_logprobs == "sampler" and self.update_step == first_update:  # weights not yet updated
                        sampler_diff.append(sampler_max_diff(logp, batch["old_logp"], batch["action_mask"]))
                    loss, st = self.policy_objective(logp, batch)
                    if cfg.kernel_check_every and k == 0 and self.update_step % cfg.kernel_check_every == 0:
                        stats["kernel/max_abs_diff"].append(self.kernel_check(batch, logp))
                    (loss * weight).backward()
                    losses.append(loss.item())
                    stats["loss/policy"].append(loss.item())
                    stats["clip_frac"].append(st["clip_frac"])
                    stats["approx_kl"].append(st["approx_kl"])
                    if self.critic is not None:
                        with self.autocast():
                            values = self.critic(batch)
                        vloss = algos.value_loss(values, batch["old_values"], batch["returns"], batch["action_mask"],
                                                 cfg.value_clip, cfg.loss_agg)
                        (vloss * weight).backward()
                        losses.append(vloss.item())
                        stats["loss/value"].append(vloss.item())
                lr = self.lr_at(cfg.actor_lr)
                norms = [clip_grad_norm(self.actor_params, cfg.grad_clip)]
                if self.critic is not None:
                    norms.append(clip_grad_norm(self.critic_params, cfg.grad_clip))
                # A NaN or Inf never reaches the weights: the update is skipped (and counted) instead, on every rank.
                finite = not dist.all_reduce_sum(torch.tensor([float(not all(map(math.isfinite, losses + norms)))]))\
                    .item()
                where = f"step {self.step + 1}, update {self.update_step + 1}, phase 'update'"
                if self.guard.ok(finite, "loss" if not all(map(math.isfinite, losses)) else "gradient norm", where):
                    optimizer_step(self.optimizer, lr, self.actor_params, self.actor_shards)
                    stats["grad_norm"].append(norms[0])
                    if self.critic is not None:
                        optimizer_step(self.critic_optimizer, self.lr_at(cfg.critic_lr), self.critic_params,
                                       self.critic_shards)
                        stats["critic_grad_norm"].append(norms[1])
                else:
                    for p in self.actor_params + self.critic_params:
                        p.grad = None
                self.update_step += 1
        finite = {k: [x for x in v if math.isfinite(x)] for k, v in stats.items()}
        out = {k: sum(v) / len(v) for k, v in finite.items() if v}
        out["lr"] = lr
        if sampler_diff:
            out["logprob/sampler_max_diff"] = max(sampler_diff)
        return out

    def micro_batches(self, rollout: Rollout, idx) -> list[list[int]]:
        """Samples `idx` in micro-batches: packed up to --max-tokens-per-micro, else --micro-batch-size at a time."""
        idx = list(idx)
        if not self.packed:
            return list(chunks(idx, self.cfg.micro_batch_size))
        lengths = rollout.lengths()
        groups = micro_batches([lengths[i] for i in idx], self.cfg.max_tokens_per_micro, self.cfg.micro_batch_size)
        return [[idx[j] for j in g] for g in groups]

    def in_step(self, groups: list[list[int]]) -> list[tuple[list[int], bool]]:
        """(micro-batch, real) pairs, as many on every process: FSDP's collectives need the same number of forward
        and backward passes everywhere, so a process with fewer micro-batches repeats one with weight 0."""
        pairs = [(g, True) for g in groups]
        most = max(dist.all_gather_objects(len(pairs)))
        return pairs + [(groups[0], False)] * (most - len(pairs))

    def lr_at(self, base_lr: float) -> float:
        return lr_at(self.update_step, self.total_updates, base_lr, self.cfg.warmup_ratio, self.cfg.min_lr_ratio)

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
            ref, _ = self.scorer(batch)  # the torch log-prob path
        diff = (logp.detach().float() - ref.float()).abs()[mask].max().item() if mask.any() else 0.0
        tol = cfg.kernel_check_tol or (1e-3 if self.autocast_dtype is None else 5e-2)
        if not diff <= tol:
            raise RuntimeError(f"kernel check failed at update {self.update_step}: log-probs of the "
                               f"{self.kernels.name} kernels differ from the torch references by {diff:.3g} > "
                               f"{tol:g}; rerun with --kernels torch")
        return diff

    # -- outputs -------------------------------------------------------------------------------------------------
    def save(self, path: Path, resumable: bool = True) -> Path:
        """A Hugging Face checkpoint (model + processor) that from_pretrained loads; beside it the critic and, to
        resume exactly, the optimizer and random number generator states. Written whole or not at all. With several
        processes every rank takes part: rank 0 writes the weights gathered from all, each rank its own optimizer
        shard and random state."""
        policy_state = dist.full_state_dict(self.scorer) if self.world > 1 else None
        critic_state = dist.full_state_dict(self.critic) if self.world > 1 and self.critic is not None else None
        staged = [path.parent / f".{path.name}.rank{r}.pt" for r in range(self.world)]
        if resumable and self.world > 1:
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(self.own_state(), staged[self.rank])
            dist.barrier()

        def write(tmp: Path):
            if policy_state is None:
                self.policy.save_pretrained(tmp)
            else:
                self.policy.save_pretrained(tmp, state_dict={k.removeprefix("model."): v for k, v in
                                                             policy_state.items()})
            self.processor.save_pretrained(tmp)
            if self.critic is not None:
                torch.save(critic_state if critic_state is not None else self.critic.state_dict(), tmp / "critic.pt")
            if resumable and self.world == 1:
                torch.save(self.own_state(), tmp / "trainer_state.pt")
            elif resumable:
                for r, file in enumerate(staged):
                    os.replace(file, tmp / f"trainer_state_rank{r}.pt")
            (tmp / "trainer_state.json").write_text(json.dumps(  # last: its presence marks a whole checkpoint
                {"step": self.step, "update_step": self.update_step, "base_model": self.base_model,
                 "counts": dict(self.counts), "world_size": self.world}, indent=2))

        error = None
        if dist.is_main():
            try:
                with watchdog("checkpoint", self.cfg.stall_timeout, self.log):
                    write_atomic(path, write)
            except CheckpointError as e:
                error = str(e)
        error = dist.broadcast_object(error)
        if error:
            raise CheckpointError(error)
        return path

    def own_state(self) -> dict:
        """What this process needs to continue exactly: its optimizer states and random number generators."""
        return {"optimizer": self.optimizer.state_dict(),
                "critic_optimizer": self.critic_optimizer.state_dict() if self.critic_optimizer else None,
                "torch_rng": torch.get_rng_state(), "python_rng": random.getstate()}

    def save_checkpoint(self) -> Path:
        path = self.save(self.out / "checkpoints" / f"step_{self.step}")
        if dist.is_main():
            prune(self.out, self.cfg.keep_last)
        return path

    def load_state(self, path: Path):
        info = json.loads((path / "trainer_state.json").read_text())
        if info.get("world_size", 1) != self.world:
            raise CheckpointError(f"{path} was written by {info.get('world_size', 1)} processes; resume it with as "
                                  f"many (torchrun --nproc_per_node {info.get('world_size', 1)})")
        name = "trainer_state.pt" if self.world == 1 else f"trainer_state_rank{self.rank}.pt"
        state = torch.load(path / name, weights_only=False)
        self.step, self.update_step = info["step"], info["update_step"]
        self.counts = Counter(info["counts"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.critic is not None:
            self.critic_optimizer.load_state_dict(state["critic_optimizer"])
        torch.set_rng_state(state["torch_rng"])
        random.setstate(state["python_rng"])
        self.log(f"resumed from {path} at step {self.step}")

    def stopping(self, stop: StopRequest) -> bool:
        """A stop signal reached any process: all stop after the same step."""
        return dist.all_reduce_sum(torch.tensor([float(stop.requested)])).item() > 0

    def token_mean(self, x: torch.Tensor, mask: torch.Tensor) -> float:
        """The mean of x over the valid tokens of every process (each process's own mean would weigh its tokens
        by how few it has)."""
        total = torch.stack([algos.masked_sum(x, mask), mask.sum()]).double()
        total = dist.all_reduce_sum(total) if self.world > 1 else total
        return (total[0] / total[1].clamp(min=1)).item()

    def global_metrics(self, metrics: dict) -> dict:
        """The step's metrics over every process: per-sample means (every process has as many samples) and
        token means (already global: token_mean) averaged, maxima (".../max") the largest, running counts summed."""
        if self.world == 1:
            return {**metrics, **self.counts}
        parts = dist.all_gather_objects((metrics, dict(self.counts)))
        keys = dict.fromkeys(k for m, _ in parts for k in m)
        out = {k: (max if k.endswith("/max") else lambda v: sum(v) / len(v))([m[k] for m, _ in parts if k in m])
               for k in keys}
        for _, counts in parts:
            for k, v in counts.items():
                out[k] = out.get(k, 0) + v if k in out and k not in keys else v
        return out

    def open_metrics(self):
        """metrics.jsonl for appending; on resume, first cut (atomically) the lines of steps after the checkpoint."""
        path = self.out / "metrics.jsonl"
        if path.exists():
            kept = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] <= self.step]
            tmp = path.with_name(f".metrics.jsonl.tmp-{os.getpid()}")
            tmp.write_text("".join(line + "\n" for line in kept))
            os.replace(tmp, path)
        return open(path, "a")

    def train(self) -> Path | None:
        """Steps until the end (returns final/) or a stop signal (checkpoints, returns None)."""
        cfg, main = self.cfg, dist.is_main()
        monitor = Monitor(cfg, self.out, self.log)  # --eval-benchmarks (every process), --log-with, --plots
        metrics_file = self.open_metrics() if main else open(os.devnull, "w")
        if main:
            prune(self.out, cfg.keep_last)  # leftovers of a write that was interrupted
        bar = tqdm(total=self.total_steps, initial=self.step, desc="rl", unit="step", dynamic_ncols=True,
                   **({} if main else {"disable": True}))  # on the main process tqdm's default (TQDM_DISABLE=1: off)
        try:
            if monitor.names and self.step == 0:  # the "before" of the evaluations
                metrics_file.write(json_line({"step": 0, "update_step": 0, **monitor.evaluate(self)})[0] + "\n")
            with StopRequest(self.log) as stop:
                while self.step < self.total_steps and not self.stopping(stop):
                    t0 = time.perf_counter()
                    rollout, metrics = self.make_experience(self.prompts_for_step(self.step))
                    if rollout is not None:
                        with self.phase("update", metrics):
                            metrics.update(self.train_on(rollout))
                        metrics["tokens_per_s"] = rollout.mask.sum().item() / (time.perf_counter() - t0)
                    metrics["time/step"] = time.perf_counter() - t0
                    metrics["mem/peak_gb"] = peak_memory_gb(self.device)
                    self.counts["guard/skipped_steps"] = self.guard.skipped
                    metrics = self.global_metrics(metrics)
                    self.step += 1
                    metrics = {"step": self.step, "update_step": self.update_step, **metrics}
                    metrics.update(monitor.after_step(self, metrics))  # evaluation results when one is due
                    line, nonfinite = json_line(metrics)  # strict JSON: NaN / Inf written as null, counted
                    if nonfinite:
                        self.counts["metrics/nonfinite"] += nonfinite
                        line, _ = json_line({**metrics, "metrics/nonfinite": self.counts["metrics/nonfinite"]})
                    metrics_file.write(line + "\n")
                    metrics_file.flush()
                    bar.update()
                    bar.set_postfix(reward=f"{metrics['reward/mean']:.3f}",
                                    len=f"{metrics.get('response_len/mean', 0):.0f}")
                    if cfg.save_every and self.step % cfg.save_every == 0:
                        self.save_checkpoint()
                if self.stopping(stop) and self.step < self.total_steps:
                    path = self.save_checkpoint()
                    script = Path(sys.argv[0]).name if sys.argv[0].endswith(".py") else "train_fre.py"
                    self.log(f"stopped by {stop.signal_name or 'a stop signal'} after step {self.step}: checkpoint "
                             f"{path}; continue with: python {script} --resume {self.out}")
                    return None
            return self.save(self.out / "final", resumable=False)
        finally:
            bar.close()
            metrics_file.close()
            monitor.close()
