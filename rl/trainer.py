"""The RL step, and one place for all its state.

    prompts -> generate (n samples each) -> reward -> old / reference log-probs (+ critic values)
    -> advantages -> update (PPO epochs over micro-batches) -> one metrics line (+ checkpoint)

Each phase is a method under its banner below; the step's data lives in one `Rollout` (rl/batch.py), sliced per
micro-batch. The harness lives beside it: checkpoints in rl/checkpoint.py, processes in rl/dist.py, the run's set-up
in rl/run.py, what a run shows in rl/monitor.py. Parameters stay in fp32 (master weights) and the forward passes run
under bf16 autocast on a GPU: with the paper's learning rate of 4e-7, an Adam update is far below the resolution of a
bf16 weight and would simply be lost.
"""

import contextlib
import math
import random
import sys
import time
from collections import Counter
from pathlib import Path

import torch

import lmm_kernels
from rl import algos, checkpoint, dist, lora, losses
from rl.batch import Rollout, UnusablePrompt, encode_prompts, is_vision_model
from rl.config import Config
from rl.critic import make_critic
from rl.guards import NonFiniteGuard, Stalled, StepFailed, StopRequest, watchdog
from rl.monitor import Monitor
from rl.offload import placed
from rl.optim import BF16_WEIGHTS, clip_grad_norm, local_shards, lr_at, make_optimizer, optimizer_step, schedule
from rl.policy import LogProbs, check_kernels, load_policy, load_reference
from rl.processor import pad_token_id, set_image_pixels, tokenizer_of
from rl.rollout import generate


class Trainer:
    def __init__(self, cfg: Config, samples: list, reward_fn, model: str, evaluator=None, log=print):
        """`model`: the checkpoint to start from (rl.run resolves --model / --init); `evaluator` runs
        --eval-benchmarks (evaluation.TrainingEvaluator)."""
        if len(samples) < cfg.prompts_per_step:
            raise ValueError(f"{len(samples)} samples is fewer than --prompts-per-step {cfg.prompts_per_step}")
        self.cfg, self.samples, self.reward_fn, self.base_model = cfg, samples, reward_fn, model
        self.device = dist.setup(cfg.device)
        self.log = log if dist.is_main() else (lambda *a, **k: None)
        self.world, self.rank, self.out = dist.world(), dist.rank(), Path(cfg.out)
        random.seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        self.autocast_dtype = dist.autocast_dtype(cfg.dtype, self.device)
        sharded, mixed = self.world > 1, self.device.type == "cuda" and self.autocast_dtype is not None

        # -- the models: policy, reference (kl > 0), critic (gae) -------------------------------------------------
        self.kernels = lmm_kernels.select(cfg.kernels, self.device, cfg.attn, packed=cfg.max_tokens_per_micro > 0)
        self.log(self.kernels.reason)
        weights = torch.bfloat16 if cfg.optim == BF16_WEIGHTS else torch.float32  # else fp32 master weights
        if cfg.load_in_4bit and (self.device.type != "cuda" or sharded):
            raise SystemExit("error: --load-in-4bit: bitsandbytes' 4-bit base needs a CUDA GPU and one process; "
                             "here use --lora-rank alone (LoRA over the full-precision base)")
        # With LoRA the base is frozen: it needs no fp32 master copy, and a resumed run loads it, then its adapter.
        self.policy, self.processor = load_policy(
            model if cfg.lora_rank else (cfg.resume or model), (self.autocast_dtype or weights) if cfg.lora_rank
            else weights, self.kernels.attn_implementation, self.device, cfg.load_in_4bit)
        lmm_kernels.prepare_model(self.policy, self.kernels)
        self.adapters = lora.add_adapters(self.policy, cfg) if cfg.lora_rank else None  # peft's, in place
        if self.adapters is not None and cfg.resume:
            lora.load_adapter(self.adapters, Path(cfg.resume))
        if self.device.type == "cpu":
            self.log(dist.use_cpu_threads(cfg.cpu_threads, self.policy))
        self.tokenizer, self.pad_id = tokenizer_of(self.processor), pad_token_id(self.processor)
        set_image_pixels(self.processor, cfg.min_pixels, cfg.max_pixels)
        if cfg.freeze_vision and is_vision_model(self.policy):
            self.policy.model.visual.requires_grad_(False)
        if cfg.gradient_checkpointing:
            self.policy.activation_checkpointing_enable({"use_reentrant": False})
        # The KL reference: a frozen copy of the initial policy, or with LoRA the policy with its adapters off.
        self.ref = load_reference(self.policy, model if cfg.resume else None, weights, self.kernels, self.device,
                                  self.autocast_dtype, cfg.ref_offload and not sharded) \
            if cfg.kl > 0 and self.adapters is None else None
        # Where the KL goes, decided once: a per-token reward penalty (LMM-R1) or a loss term (GRPO: LossSpec.beta).
        self.beta_reward = cfg.kl if cfg.kl > 0 and cfg.kl_in == "reward" else 0.0
        # The policy loss (rl/losses.py): the fused kernel where it computes this loss, else the torch definition.
        self.spec = losses.LossSpec.of(cfg)
        not_fused = self.spec.plain()
        fused = self.kernels.policy_losses.get("clip") if not_fused is None else None
        if self.kernels.policy_losses and not_fused:
            self.log(f"policy loss: the torch definition (the fused kernel computes PPO-clip + KL only; {not_fused})")
        self.policy_loss = lambda logp, old, adv, mask, ref, weight: losses.per_token(logp, old, adv, mask, self.spec,
                                                                                    ref, weight, fused)
        # The update's loss inside the log-prob call where it is a sum of per-token terms (its gradient in the
        # forward: the LM head's backward recomputes no logits, 3 GEMMs instead of 4); else after it (policy_objective).
        not_per_token = losses.per_token_reason(self.spec, cfg.old_logprobs == "sampler")
        self.loss_in_forward = not_per_token is None
        if not_per_token:
            self.log(f"log-prob: the update's backward recomputes the logits (the loss is not a sum of per-token "
                     f"terms: {not_per_token})")
        self.critic = make_critic(self.policy, cfg, self.device, mixed)
        # The log-prob forwards as modules: with several processes each is an FSDP2 root over its layers.
        chunk, temperature = cfg.logprob_chunk, cfg.temperature
        self.policy_logprobs = LogProbs(self.policy, temperature, chunk, sharded)
        self.ref_logprobs = None if self.ref is None else LogProbs(self.ref, temperature, chunk, sharded)
        if self.adapters is not None and cfg.kl > 0:
            self.ref_logprobs = lora.Reference(self.adapters, self.policy_logprobs)
        if sharded:
            dist.shard(self.policy_logprobs, mixed)
            if self.ref is not None:
                dist.shard(self.ref_logprobs, mixed_precision=False, offload=cfg.ref_offload)

        # -- optimizer and schedule ---------------------------------------------------------------------------------
        self.packed = cfg.max_tokens_per_micro > 0
        self.total_steps, self.updates_per_step, self.total_updates = schedule(cfg, len(samples))
        self.actor_params = [p for p in self.policy.parameters() if p.requires_grad]
        self.actor_shards = local_shards(self.actor_params)  # what this process updates
        self.optimizer = make_optimizer(self.actor_shards, cfg.actor_lr, tuple(cfg.adam_betas), cfg.weight_decay,
                                        cfg.optim)
        self.step, self.update_step = 0, 0
        self.counts = Counter()  # data problems seen so far (skipped prompts, unparseable gold answers, ...)
        self.unusable: dict[int, str] = {}  # id(sample) -> "too_long" / "image": skipped without encoding again
        self.guard = NonFiniteGuard(cfg.max_bad_steps)
        self.evaluator = evaluator
        if cfg.resume:
            checkpoint.load(self, Path(cfg.resume))

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
        times[f"time/{name}"] = times.get(f"time/{name}", 0.0) + time.perf_counter() - t

    def micro_batches(self, rollout: Rollout, idx) -> list[tuple[list[int], bool]]:
        """(micro-batch, real) pairs of the samples `idx`, as many on every process (rl.dist.same_count)."""
        return dist.same_count(rollout.micro_batches(idx, self.cfg.max_tokens_per_micro, self.cfg.micro_batch_size))

    # == prompts ======================================================================================================
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

    def encode(self, samples: list) -> tuple[list[dict], list]:
        """(prompt rows, their samples), without the prompts over --max-prompt-len (counted, measured once) and the
        prompts that cannot be used when drawn - an image that cannot be read, image tokens that do not match the
        images (rl.batch.UnusablePrompt: counted as data/<reason>, logged with the row, never drawn again)."""
        prompts, kept = [], []
        fresh = [s for s in samples if id(s) not in self.unusable]
        self.counts.update(f"data/{self.unusable[id(s)]}" for s in samples if id(s) in self.unusable)
        for s in fresh:
            try:
                row = encode_prompts(self.processor, [s])[0]
            except UnusablePrompt as e:  # an image that cannot be read, image tokens that do not match the images
                self.log(f"warning: skipped, and from now on: {e}")
                self.unusable[id(s)] = e.reason
                self.counts[f"data/{e.reason}"] += 1
                continue
            if row["prompt_ids"].numel() > self.cfg.max_prompt_len:
                self.unusable[id(s)] = "prompt_too_long"
                self.counts["data/prompt_too_long"] += 1
                continue
            prompts.append(row)
            kept.append(s)
        if not prompts:
            raise RuntimeError(f"no prompt of step {self.step + 1} can be used (longer than --max-prompt-len "
                               f"{self.cfg.max_prompt_len}, or an image that cannot be read)")
        return prompts, kept

    # == one RL step: generate -> reward -> log-probs -> advantages (-> update, below) ===============================
    def make_experience(self, samples: list) -> tuple[Rollout | None, dict]:
        """The step's experience in one Rollout (None when a reward is not finite, or when dynamic sampling finds no
        informative group: the step does not train)."""
        times = {}
        prompts, kept = self.encode(samples)
        with self.phase("generate", times):
            rollout = self.sample(prompts)
        with self.phase("reward", times):
            rewards, metrics = self.reward(rollout, kept)
        if rewards is not None and self.cfg.dynamic_sampling:
            rollout, rewards, more = self.informative(rollout, rewards, kept, times)
            metrics.update(more)
        if rewards is None:
            return None, {**metrics, **times}
        with self.phase("logprob", times):
            self.score(rollout)
        metrics.update(self.advantages(rollout, rewards))
        metrics["prompt_len/mean"] = sum(p["prompt_ids"].numel() for p in prompts) / len(prompts)
        return rollout, {**metrics, **times}

    # == dynamic sampling (DAPO) ======================================================================================
    def informative(self, rollout: Rollout, rewards: torch.Tensor, kept: list,
                    times: dict) -> tuple[Rollout | None, torch.Tensor | None, dict]:
        """DAPO's dynamic sampling (Yu et al. 2025, sec. 3.2): a group whose rewards are all equal has advantage 0 and
        carries no gradient, so it is dropped, and up to --dynamic-sampling more rounds of prompts are generated until
        every process holds its share of --prompts-per-step informative groups; the extra ones are cut. Every process
        runs as many rounds and keeps as many groups (the fewest any of them has when the rounds run out)."""
        cfg, n, share = self.cfg, self.cfg.n_samples, self.cfg.prompts_per_step // self.world
        parts, scores, groups, dropped, rounds = [], [], [], 0, 0
        while True:
            spread = rewards.view(-1, n)
            good = [g for g in range(len(spread)) if spread[g].max() > spread[g].min()]
            dropped += len(spread) - len(good)
            parts.append(rollout.groups(good))
            scores.append(spread[good].reshape(-1))
            groups += [kept[g] for g in good]
            if rounds == cfg.dynamic_sampling or not dist.any_rank(len(groups) < share):
                break
            rounds += 1
            prompts, kept = self.encode(self.refill_prompts(rounds))
            with self.phase("generate", times):
                rollout = self.sample(prompts, rounds)
            with self.phase("reward", times):
                rewards, _ = self.reward(rollout, kept)
            if rewards is None:
                break
        keep = min(share, *dist.all_gather_objects(len(groups)))
        metrics = {"sampling/dropped_groups": float(dist.all_reduce_sum(torch.tensor([float(dropped)])).item()),
                   "sampling/refill_rounds": float(rounds), "sampling/groups": float(keep * self.world)}
        if keep == 0:
            self.log(f"step {self.step + 1}: no group with different rewards after {rounds} more rounds; no update")
            return None, None, metrics
        return Rollout.join(parts).groups(range(keep)), torch.cat(scores)[:keep * n], metrics

    def refill_prompts(self, round_: int) -> list:
        """This process's share of --prompts-per-step more prompts for a dynamic-sampling round: drawn at random from
        the whole data set, seeded by the step and the round (the epoch order and resume stay as they are)."""
        order = random.Random(f"{self.cfg.seed}:{self.step}:{round_}").sample(range(len(self.samples)),
                                                                              self.cfg.prompts_per_step)
        share = len(order) // self.world
        return [self.samples[i] for i in order[self.rank * share:(self.rank + 1) * share]]

    # == generate =====================================================================================================
    def sample(self, prompts: list[dict], round_: int = 0, n: int | None = None, seed: int | None = None) -> Rollout:
        """n samples (--n-samples unless given) of each prompt from the policy itself (full weights gathered; the
        critic offloaded). `seed` replaces the step's (samples.html draws apart from training)."""
        cfg = self.cfg
        # The samples depend on the seed, the step, the round (dynamic sampling) and the prompt, not on how many
        # processes share the step.
        if seed is None:
            seed = ((cfg.seed * 1_000_003 + self.step) * 65_536 + self.rank * (cfg.prompts_per_step // self.world)
                    + round_ * 2**40)
        with self.autocast(), dist.gathered(self.policy_logprobs), self.critic.offloaded():
            return generate(self.policy, self.processor, prompts, n or cfg.n_samples, cfg.temperature, cfg.top_p,
                            cfg.max_new_tokens, cfg.gen_batch_size, engine=cfg.engine, compile=cfg.compile_decode,
                            seed=seed, truncated_end=cfg.truncated_end)

    # == reward =======================================================================================================
    def reward(self, rollout: Rollout, samples: list) -> tuple[torch.Tensor | None, dict]:
        """(rewards [N], their component means); rewards None when one is not finite on any process (a data error:
        counted, and the step does not train)."""
        try:
            scored = self.judge(rollout, samples)
        except RuntimeError as e:  # the reward workers cannot be kept alive (rewards/pool.py): stop with a checkpoint
            raise StepFailed(f"the reward cannot be computed ({e})") from e
        self.counts.update(scored.counts)
        rewards = torch.tensor(scored.components["total"], dtype=torch.float32)
        metrics = {f"reward/{k}": sum(v) / len(v) for k, v in scored.components.items() if k != "total"}
        if self.cfg.overlong_buffer:  # DAPO's soft overlong punishment, added to the total
            penalty = algos.overlong_penalty(rollout.mask.sum(1), self.cfg.max_new_tokens, self.cfg.overlong_buffer,
                                             self.cfg.overlong_penalty)
            rewards = rewards + penalty
            metrics["reward/overlong"] = penalty.mean().item()
        finite = torch.isfinite(rewards)
        if dist.any_rank(not finite.all()):
            self.counts["guard/nonfinite_rewards"] += int((~finite).sum())
            self.guard.ok(False, "reward", f"step {self.step + 1}, phase 'reward'")
            return None, {**metrics, "reward/mean": rewards[finite].mean().item() if finite.any() else 0.0}
        return rewards, {**metrics, "reward/mean": rewards.mean().item()}

    def judge(self, rollout: Rollout, samples: list, n: int | None = None):
        """The reward function's output for a rollout of n samples (--n-samples unless given) of each of `samples`."""
        group = [s for s in samples for _ in range(n or self.cfg.n_samples)]
        return self.reward_fn(rollout.texts(self.tokenizer, self.cfg.empty_response), [s.answer for s in group],
                              [{**s.meta, "domain": s.domain} for s in group])

    # == log-probs ====================================================================================================
    def score(self, rollout: Rollout):
        """Old log-probs and entropies (or the sampler's, --old-logprobs sampler: one forward pass fewer), the
        reference's log-probs, the critic's values: into the rollout."""
        from_sampler = self.cfg.old_logprobs == "sampler"
        if from_sampler:
            rollout.old_logp = rollout.sampler_logp.clone()
        self.policy.eval()
        with torch.no_grad(), self.autocast(), placed(self.ref, self.device, enabled=self.cfg.ref_offload):
            for idx, real in self.micro_batches(rollout, range(len(rollout))):
                batch = rollout.batch(idx, self.pad_id, packed=self.packed)
                if from_sampler:
                    logp = batch["old_logp"]
                else:
                    logp, entropy = self.policy_logprobs(batch, self.kernels.logprobs, with_entropy=True)
                ref_logp = self.ref_logprobs(batch, self.kernels.logprobs)[0] if self.ref_logprobs is not None else logp
                values = self.critic.values(batch)
                if real:
                    if not from_sampler:
                        rollout.store(idx, "old_logp", logp)
                        rollout.store(idx, "entropy", entropy)
                    rollout.store(idx, "ref_logp", ref_logp)
                    rollout.store(idx, "old_values", values)

    # == advantages ==================================================================================================
    def advantages(self, rollout: Rollout, rewards: torch.Tensor) -> dict:
        """Per-token advantages and returns into the rollout (the estimator's; the KL in the reward when
        --kl-in reward), and the step's rollout metrics."""
        cfg, mask, lengths = self.cfg, rollout.mask, rollout.mask.sum(1).float()
        k1 = algos.kl_estimate(rollout.old_logp, rollout.ref_logp, "k1")
        kl = k1 if cfg.kl_estimator == "k1" else algos.kl_estimate(rollout.old_logp, rollout.ref_logp,
                                                                   cfg.kl_estimator)
        rollout.advantages, rollout.returns = algos.compute_advantages(
            cfg.estimator, rewards, mask, cfg.n_samples, kl=kl, beta=self.beta_reward, values=rollout.old_values,
            gamma=cfg.gamma, lam=cfg.lam, whiten_advantages={"auto": None, "on": True, "off": False}[cfg.whiten],
            all_reduce=dist.all_reduce_sum if self.world > 1 else None,  # whitened over every process's tokens
            scale=cfg.scale_rewards)
        if cfg.mask_truncated:  # DAPO overlong filtering: responses cut at --max-new-tokens leave the loss
            rollout.trainable = torch.tensor(rollout.finished, dtype=torch.bool)
        metrics = {"response_len/mean": lengths.mean().item(), "response_len/max": lengths.max().item(),
                   "response/truncated_frac": sum(not f for f in rollout.finished) / len(rollout),
                   **({"loss/truncated_masked": 1.0 - rollout.trainable.float().mean().item()}
                      if cfg.mask_truncated else {}),
                   "kl": dist.token_mean(algos.masked_sum(k1, mask), mask.sum()),
                   "entropy": dist.token_mean(algos.masked_sum(rollout.entropy, mask), mask.sum())}
        if cfg.engine == "ours" and cfg.old_logprobs == "recompute":
            metrics["logprob/sampler_max_diff"] = algos.max_abs_diff(rollout.old_logp, rollout.sampler_logp, mask)
        return metrics

    # == update ======================================================================================================
    def train_on(self, rollout: Rollout) -> dict:
        """PPO epochs over the rollout; one optimizer step per train batch, micro-batches accumulate."""
        cfg, spec, stats, sampler_diff = self.cfg, self.spec, {}, []
        agg, in_ratio = losses.AGGREGATIONS[spec.agg], cfg.old_logprobs == "sampler"
        self.policy.train()
        self.critic.train()
        gen = torch.Generator().manual_seed(cfg.seed * 100003 + self.step)
        first_update, size = self.update_step, cfg.train_batch_size // self.world
        # The micro-batch losses add up to the loss of each train batch over every process (rl.losses
        # .micro_batch_weights); dapo divides by the rollout's tokens per train batch.
        loss_mask = rollout.mask & rollout.trainable[:, None]
        per_train_batch = dist.sum_all(agg.count(loss_mask)) / math.ceil(len(rollout) / size)
        for _ in range(cfg.ppo_epochs):
            order = torch.randperm(len(rollout), generator=gen).tolist()
            for train_idx in (order[i:i + size] for i in range(0, len(order), size)):
                micro = self.micro_batches(rollout, train_idx)
                counts = [agg.count(loss_mask[idx]) if real else 0.0 for idx, real in micro]  # stand-ins weigh 0
                weights = losses.micro_batch_weights(counts, spec.agg, self.world, dist.sum_all, per_train_batch)
                scalars = []
                for k, ((idx, _), weight) in enumerate(zip(micro, weights)):
                    batch = rollout.batch(idx, self.pad_id, packed=self.packed)
                    loss, logp, corrected = self.policy_objective(batch, in_ratio)
                    mask, old = batch["loss_mask"], batch["old_logp"]
                    if in_ratio and self.update_step == first_update:  # weights not yet updated
                        sampler_diff.append(algos.max_abs_diff(logp, old, batch["action_mask"]))
                    add(stats, {"loss/policy": loss.item(), **corrected,
                                **losses.policy_stats(logp, old, batch["advantages"], mask, spec),
                                "logprob/in_forward": float(self.loss_in_forward)})
                    if cfg.kernel_check_every and k == 0 and self.update_step % cfg.kernel_check_every == 0:
                        add(stats, {"kernel/max_abs_diff": check_kernels(self, batch, logp)})
                    (loss * weight).backward()
                    critic_stats = self.critic.backward(batch, weight, self.autocast)
                    add(stats, critic_stats)
                    scalars += [loss.item(), *critic_stats.values()]
                norms = {"grad_norm": clip_grad_norm(self.actor_params, cfg.grad_clip), **self.critic.clip_grad_norm()}
                # A NaN or Inf never reaches the weights: the update is skipped (and counted) instead, on every rank.
                bad_loss = not all(map(math.isfinite, scalars))
                finite = not dist.any_rank(bad_loss or not all(map(math.isfinite, norms.values())))
                where = f"step {self.step + 1}, update {self.update_step + 1}, phase 'update'"
                lr = self.lr_at(cfg.actor_lr)
                if self.guard.ok(finite, "loss" if bad_loss else "gradient norm", where):
                    optimizer_step(self.optimizer, lr, self.actor_params, self.actor_shards)
                    self.critic.step(self.lr_at(cfg.critic_lr))
                    add(stats, norms)
                else:
                    for p in self.actor_params:
                        p.grad = None
                    self.critic.zero_grad()
                self.update_step += 1
        finite = {k: [x for x in v if math.isfinite(x)] for k, v in stats.items()}
        out = {k: max(v) if k.endswith("_max") else sum(v) / len(v) for k, v in finite.items() if v}
        return {**out, "lr": lr, **({"logprob/sampler_max_diff": max(sampler_diff)} if sampler_diff else {})}

    def policy_objective(self, batch: dict, in_ratio: bool) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """(the micro-batch's policy loss, its current log-probs [B, R], the rollout correction's metrics): the one
        place where the log-prob path is chosen. With self.loss_in_forward the loss (rl.losses.token_loss: the same
        per-token loss and aggregation) is computed inside the log-prob call, which finishes its gradient in the
        forward; else from the log-probs, and the backward recomputes the logits (GSPO, a correction per sequence)."""
        spec, mask, old, sampler = self.spec, batch["loss_mask"], batch["old_logp"], batch["sampler_logp"]
        if self.loss_in_forward:
            terms = losses.token_loss(self.policy_loss, batch["action_mask"], old, batch["advantages"], mask,
                                      batch["ref_logp"], sampler, spec, in_ratio, self.device)
            with self.autocast():
                loss, logp, _ = self.policy_logprobs(batch, self.kernels.logprob_loss, token_loss=terms)
            return loss, logp, losses.correction_weight(logp if in_ratio else old, sampler, mask, spec, in_ratio)[1]
        with self.autocast():
            logp, _ = self.policy_logprobs(batch, self.kernels.logprobs)
        correction, corrected = losses.correction_weight(logp if in_ratio else old, sampler, mask, spec, in_ratio)
        per_token = self.policy_loss(logp, old, batch["advantages"], mask, batch["ref_logp"], correction)
        return losses.aggregate(per_token, mask, spec.agg, spec.max_len), logp, corrected

    def lr_at(self, base_lr: float) -> float:
        return lr_at(self.update_step, self.total_updates, base_lr, self.cfg.warmup_ratio, self.cfg.min_lr_ratio)

    # == the loop ====================================================================================================
    def train(self) -> Path | None:
        """Steps until the end (returns final/) or a stop signal (checkpoints, returns None)."""
        final = self.out / "final"
        if dist.is_main():
            checkpoint.prune(self.out, self.cfg.keep_last)  # leftovers of a write that was interrupted
        if self.cfg.resume and self.step >= self.total_steps and (final / checkpoint.COMPLETE).is_file():
            self.log(f"the run is finished (step {self.step} of {self.total_steps}); {final} is kept as it is")
            return final
        monitor = Monitor(self, self.evaluator)  # metrics.jsonl, the progress bar, --eval-benchmarks, --log-with, plots
        start = self.step_start()
        with StopRequest(self.log) as stop:  # from here to the end a stop signal loses no step
            try:
                monitor.start(self)
                while self.step < self.total_steps and not dist.any_rank(stop.requested):
                    t0, start = time.perf_counter(), self.step_start()
                    rollout, metrics = self.make_experience(self.prompts_for_step(self.step))
                    if rollout is not None:
                        with self.phase("update", metrics):
                            metrics.update(self.train_on(rollout))
                        metrics["tokens_per_s"] = rollout.mask.sum().item() / (time.perf_counter() - t0)
                    self.step += 1
                    monitor.end_step(self, metrics, t0)
                    if self.cfg.save_every and self.step % self.cfg.save_every == 0:
                        self.save_checkpoint()
                if dist.any_rank(stop.requested) and self.step < self.total_steps:
                    path = self.save_checkpoint()
                    self.log(f"stopped by {stop.signal_name or 'a stop signal'} after step {self.step}: checkpoint "
                             f"{path}; {self.resume_hint()}")
                    return None
                return self.save_checkpoint(final, resumable=False)
            except (Stalled, StepFailed) as e:
                return self.abandon_step(start, e)
            finally:
                monitor.close()

    def resume_hint(self) -> str:
        script = Path(sys.argv[0]).name if sys.argv[0].endswith(".py") else "train_fre.py"
        return f"continue with: python {script} --resume {self.out}"

    def save_checkpoint(self, path: Path | None = None, resumable: bool = True) -> Path:
        """checkpoints/step_N (or `path`, e.g. final/); a write that fails (a full disk) stops the run with one line:
        the previous checkpoint stays whole, and the line says how to continue."""
        try:
            path = checkpoint.save(self, path or self.out / "checkpoints" / f"step_{self.step}", resumable)
        except checkpoint.CheckpointError as e:
            kept = checkpoint.complete_checkpoints(self.out)
            raise checkpoint.CheckpointError(
                f"{e}; the run stops here. " + (f"The newest checkpoint, {kept[-1]}, is whole: {self.resume_hint()} "
                                                f"once there is room" if kept else "No checkpoint was written yet: "
                                                "start the run again once there is room")) from None
        if dist.is_main() and resumable:
            checkpoint.prune(self.out, self.cfg.keep_last)
        return path

    def step_start(self) -> dict:
        """What a step changes before its update: the random states and the counts (see abandon_step)."""
        return {"torch_rng": torch.get_rng_state(), "python_rng": random.getstate(), "counts": Counter(self.counts)}

    def abandon_step(self, start: dict, e: Exception) -> None:
        """A stop during a stalled phase, or a phase that cannot go on. Before the update the weights and optimizer
        are as the step found them, so with the random states and counts put back the step's start is written as a
        checkpoint that resumes exactly (with one process: with several, the others wait in the step, and the newest
        periodic checkpoint stays the place to resume). A stall anywhere else saves nothing new."""
        path = None
        if getattr(e, "phase", "reward") in BEFORE_UPDATE and self.world == 1:
            torch.set_rng_state(start["torch_rng"])
            random.setstate(start["python_rng"])
            self.counts = start["counts"]
            path = self.save_checkpoint()
        kept = path or next(reversed(checkpoint.complete_checkpoints(self.out)), None)
        where = f"checkpoint {kept}; {self.resume_hint()}" if kept else "no checkpoint was written yet"
        if isinstance(e, StepFailed):
            raise StepFailed(f"step {self.step + 1}: {e}; {where}") from None
        self.log(f"{e}: abandoned; {where}")


BEFORE_UPDATE = ("generate", "reward", "logprob")  # the phases that leave weights and optimizer untouched


def add(stats: dict, values: dict):
    """Append each value to its list in `stats` (the step's metric is the mean of the list)."""
    for k, v in values.items():
        stats.setdefault(k, []).append(v)
