"""The presets: the paper's runs value by value, each value's source named beside it, their offline debug and
classroom variants, and the recipes of other papers (DAPO, Dr. GRPO, GSPO). rl/config.py builds a Config from them.
"""

# The paper's runs and offline debug variants. Each value's source is named beside it: a released training script of
# LMM-R1 (examples/scripts/lmm_r1/<name>.sh at its first release, commit 9cb1513, the day after the paper), the
# released code's defaults for what the scripts leave unset (openrlhf/cli/train_ppo_ray.py, ppo_actor.py), the paper,
# or "our choice". Config's defaults are FRE-Text's values (a test checks that PRESETS["fre-text"] changes nothing).
_SHARED = dict(  # every paper run
    prompts_per_step=256, n_samples=16,  # scripts: --rollout_batch_size 256 --n_samples_per_prompt 16
    train_batch_size=256,  # scripts: --train_batch_size 256
    ppo_epochs=1,  # scripts: --max_epochs 1
    episodes=2,  # scripts: --num_episodes 2
    temperature=1.0,  # scripts: --temperature 1.0
    max_new_tokens=4096,  # scripts: --generate_max_len 4096 (PerceReason 8000, Sokoban 8196)
    max_pixels=640 * 28 * 28,  # train_ppo_ray.py default --max_pixels at 9cb1513 (the scripts leave it unset)
    eps_clip=0.2,  # train_ppo_ray.py default --eps_clip
    value_clip=0.2,  # train_ppo_ray.py default --value_clip (gae)
    gamma=1.0, lam=1.0,  # scripts: --gamma 1 --lambd 1
    kl_estimator="k1", kl_in="reward",  # train_ppo_ray.py defaults: --kl_estimator k1, no --use_kl_loss (KL in reward)
    loss="ppo",  # ppo_actor.py at 9cb1513: PPO-clip; per-sequence token mean, then the batch mean (--loss-agg auto)
    grad_clip=1.0,  # train_ppo_ray.py default --max_norm
    adam_betas=(0.9, 0.95), weight_decay=0.0,  # train_ppo_ray.py defaults --adam_betas, --l2
    warmup_ratio=0.03,  # train_ppo_ray.py default --lr_warmup_ratio
    min_lr_ratio=0.1,  # ppo_actor.py: cosine_with_min_lr, min_lr = 0.1 x lr
    freeze_vision=False,  # scripts: the vision tower trains (train_sokoban.sh alone: --freeze_prefix visual)
)
_FRE_TEXT = dict(
    _SHARED,
    model="Qwen/Qwen2.5-VL-3B-Instruct",  # train_fre_text.sh: --pretrain Qwen2.5-VL-3B-Instruct
    data="deepscaler",  # train_fre_text.sh: DeepScaler/train.jsonl (deepscaler_message.jsonl at HEAD), 40k problems
    reward="r1_math",  # math_verifier.py (format 0.5 + accuracy 1)
    estimator="reinforce_baseline",  # train_fre_text.sh: --advantage_estimator reinforce_baseline
    kl=0.001,  # train_fre_text.sh: --init_kl_coef 0.001
    actor_lr=4e-7,  # train_fre_text.sh: --actor_learning_rate 4e-7
    out="runs/fre-text",  # our choice
)
_DEBUG = dict(  # our choice: offline, a 2-core CPU, seconds
    model="tiny", data="fixture", device="cpu", dtype="fp32", kernels="torch", prompts_per_step=4, n_samples=4,
    max_new_tokens=24, max_prompt_len=512, gen_batch_size=4, train_batch_size=8, micro_batch_size=8, episodes=1,
    max_steps=4, actor_lr=1e-4, critic_lr=1e-4, save_every=2, reward_workers=1, max_pixels=112 * 112,
    gradient_checkpointing=False)
# our choice: the paper's two stages in miniature on a 2-core CPU (classroom.py), about 2 minutes a run
_CLASSROOM = dict(
    model="classroom", data="classroom-text:2048", device="cpu", dtype="fp32", kernels="torch", prompts_per_step=16,
    n_samples=8, max_new_tokens=48, max_prompt_len=512, gen_batch_size=16, train_batch_size=128,
    micro_batch_size=32, episodes=1, max_steps=50, actor_lr=3e-4, critic_lr=3e-4, save_every=0, reward_workers=2,
    min_pixels=28 * 28, max_pixels=112 * 112, gradient_checkpointing=False, freeze_vision=True,
    eval_benchmarks="classroom-text,classroom-image", eval_every=25)
# Stage 2 (MGT) continues from the FRE-Text checkpoint (--init; paper); the reference model is that checkpoint. Each
# domain's recipe, used by its paper preset and its debug variant:
_GEO = dict(
    data="vermulti-geo",  # train_mgt_geo.sh: MathV360k/geo_split.jsonl, at HEAD VerMulti/mathv_geo_message.jsonl
    reward="r1_math",  # math_verifier.py
    estimator="gae",  # train_mgt_geo.sh: --advantage_estimator gae (PPO with a critic)
    kl=0.001,  # train_mgt_geo.sh: --init_kl_coef 0.001
    actor_lr=1e-6,  # train_mgt_geo.sh: --actor_learning_rate 1e-6
    critic_lr=9e-6,  # train_ppo_ray.py default --critic_learning_rate (the script leaves it unset)
)
_PERCEREASON = dict(
    data="vermulti",  # train_mgt_percereas.sh: MathV360k/train_filter50.jsonl, at HEAD VerMulti/mathv60k_message
    reward="r1_math",  # math_verifier.py, for every sample (multiple choice included)
    estimator="reinforce_baseline",  # train_mgt_percereas.sh
    kl=0.0,  # train_mgt_percereas.sh at 9cb1513: --init_kl_coef 0.0, no reference model (0.001 from 83244e9)
    actor_lr=4e-7,  # train_mgt_percereas.sh
    max_new_tokens=8000,  # train_mgt_percereas.sh at 9cb1513: --generate_max_len 8000 (8192 from 83244e9)
)
_SOKOBAN = dict(
    data="sokoban:4096",  # our choice: generated levels (6x6-10x10, 1-3 boxes), each proved solvable
    reward="sokoban",  # sokoban_verifier.py (ours: rewards/sokoban.py)
    estimator="gae",  # train_sokoban.sh: --advantage_estimator gae
    kl=0.0,  # train_sokoban.sh: --init_kl_coef 0
    freeze_vision=True,  # train_sokoban.sh: --freeze_prefix visual
    actor_lr=1e-6,  # train_sokoban.sh: --actor_learning_rate 1e-6
    critic_lr=5e-6,  # train_sokoban.sh: --critic_learning_rate 5e-6
    prompts_per_step=128, train_batch_size=128,  # train_sokoban.sh: --rollout_batch_size 128 --train_batch_size 128
    episodes=4,  # train_sokoban.sh: --num_episodes 4
    max_new_tokens=8196,  # train_sokoban.sh: --generate_max_len 8196
)
_FOOTBALL = dict(  # our own game: every value is our choice (Sokoban's recipe)
    data="football:4096",  # our choice
    reward="football",  # our choice (envs/football)
    estimator="gae", kl=0.0, freeze_vision=True,  # our choice, as Sokoban
    actor_lr=1e-6, critic_lr=5e-6,  # our choice, as Sokoban
    max_new_tokens=2048,  # our choice: one action to pick
)
# Other papers' recipes (our presets; each value's source named beside it, the rest FRE-Text's), runnable with any
# data: TRL's GRPO-family definitions, the advantage of GRPO (group mean and std), no whitening, no KL.
_DAPO = dict(  # DAPO (Yu et al. 2025, arXiv:2503.14476)
    loss="dapo",  # sec. 3.3: token-level policy loss (TRL loss_type "dapo")
    eps_clip=0.2, clip_high=0.28,  # sec. 4.1: eps_low 0.2, eps_high 0.28 (clip-higher, sec. 3.1)
    estimator="grpo",  # eq. 9: the group-normalized advantage
    kl=0.0,  # sec. 2.3: the KL penalty is removed
    dynamic_sampling=10,  # sec. 3.2; verl's DAPO recipe: max_num_gen_batches=10
    mask_truncated=True,  # Table 1: overlong filtering (TRL's DAPO recipe: mask_truncated_completions=True)
    overlong_buffer=4096, overlong_penalty=1.0,  # sec. 4.1: soft punish cache 4096 tokens (eq. 13)
    max_new_tokens=20480,  # sec. 4.1: 16384 expected + 4096 cache
    prompts_per_step=512, n_samples=16,  # sec. 4.1: prompt batch 512, 16 responses each
    train_batch_size=512,  # sec. 4.1: mini-batch 512, 16 gradient updates per rollout step
    actor_lr=1e-6, min_lr_ratio=1.0,  # sec. 4.1: constant lr 1e-6 (its warm-up, 20 rollout steps: ours 3 %)
    out="runs/dapo",  # our choice
)
_DR_GRPO = dict(  # Dr. GRPO (Liu et al. 2025, arXiv:2503.20783; values as TRL's paper index gives them)
    loss="dr_grpo",  # sec. 3.2: token sum over a constant, the max completion length (TRL loss_type "dr_grpo")
    estimator="grpo", scale_rewards="none",  # sec. 3.2: the group mean subtracted, no std division
    kl=0.0,  # the repository's Training section: beta 0
    n_samples=8,  # the repository's Training section: num_samples 8
    max_new_tokens=3000,  # the repository's Training section: generate_max_length 3000
    out="runs/dr-grpo",  # our choice
)
_GSPO = dict(  # GSPO (Zheng et al. 2025, arXiv:2507.18071 v2)
    loss="gspo",  # eq. 5-7: the sequence-level ratio (TRL importance_sampling_level "sequence", loss_type "grpo")
    estimator="grpo",  # eq. 6: the group-normalized advantage
    eps_clip=3e-4, clip_high=4e-4,  # sec. 5.1: left and right clipping ranges 3e-4 and 4e-4
    kl=0.0,  # TRL's paper index (verl PR 2775): GSPO sets no KL
    train_batch_size=256 * 16 // 4,  # sec. 5.1: each rollout batch split into 4 mini-batches
    out="runs/gspo",  # our choice
)
PRESETS: dict[str, dict] = {
    "fre-text": _FRE_TEXT,
    "fre-multi": dict(
        _FRE_TEXT,
        data="vermulti",  # train_fre_multi.sh: MathV360k/train_filter50.jsonl, at HEAD VerMulti/mathv60k_message
        actor_lr=1e-6,  # train_fre_multi.sh: --actor_learning_rate 1e-6
        out="runs/fre-multi",  # our choice
    ),
    "debug": dict(_DEBUG, out="runs/debug"),
    # the classroom (our choice): FRE-Text, FRE-Multi and a geometry stage 2 of the warm tiny model
    "classroom": dict(_CLASSROOM, out="runs/classroom"),
    "classroom-multi": dict(_CLASSROOM, data="classroom-image:2048", out="runs/classroom-multi"),
    "mgt-classroom": dict(_CLASSROOM, model="", data="classroom-geo:2048", out="runs/mgt-classroom",
                          eval_benchmarks="classroom-geo,classroom-text"),
    # model "": --init <FRE-Text checkpoint> is required (paper: stage 2 starts from FRE-Text); out: our choice
    "mgt-geo": {**_SHARED, **_GEO, "model": "", "out": "runs/mgt-geo"},
    "mgt-percereason": {**_SHARED, **_PERCEREASON, "model": "", "out": "runs/mgt-percereason"},
    "mgt-sokoban": {**_SHARED, **_SOKOBAN, "model": "", "out": "runs/mgt-sokoban"},
    "mgt-football": {**_SHARED, **_FOOTBALL, "model": "", "out": "runs/mgt-football"},
    # Direct-RL-Geo, the paper's ablation of the two stages: MGT-Geo's recipe from the base model
    # (train_direct_rl_geo.sh: --pretrain Qwen2.5-VL-3B-Instruct; it reads ./data/MathV360k/geo_split.jsonl, the
    # file train_mgt_geo.sh also read at 9cb1513 before it was renamed to VerMulti's mathv_geo_message.jsonl)
    "direct-rl-geo": {**_SHARED, **_GEO, "model": "Qwen/Qwen2.5-VL-3B-Instruct", "out": "runs/direct-rl-geo"},
    # debug variants (our choice): the domain's recipe at debug size on bundled fixtures or a few generated prompts;
    # `--init` a debug stage-1 checkpoint
    "geo-debug": {**_GEO, **_DEBUG, "model": "", "data": "geo-fixture", "out": "runs/geo-debug",
                  "max_prompt_len": 2048},
    "percereason-debug": {**_PERCEREASON, **_DEBUG, "model": "", "data": "fixture:message",
                          "out": "runs/percereason-debug", "max_prompt_len": 2048},
    "sokoban-debug": {**_SOKOBAN, **_DEBUG, "model": "", "data": "sokoban:16", "out": "runs/sokoban-debug",
                      "max_prompt_len": 2048},
    "football-debug": {**_FOOTBALL, **_DEBUG, "model": "", "data": "football:16", "out": "runs/football-debug",
                       "max_prompt_len": 2048},
    # ... and Direct-RL-Geo's: from the tiny random model, no --init
    "direct-rl-geo-debug": {**_GEO, **_DEBUG, "data": "geo-fixture", "out": "runs/direct-rl-geo-debug",
                            "max_prompt_len": 2048},
    # other papers' objectives on stage 1 (FRE-Text's model and data unless given)
    "dapo": {**_FRE_TEXT, **_DAPO},
    "dr-grpo": {**_FRE_TEXT, **_DR_GRPO},
    "gspo": {**_FRE_TEXT, **_GSPO},
}


PURPOSES = {  # --list-presets: preset -> (the script that runs it, what it is for)
    "fre-text": ("train_fre.py", "stage 1, FRE-Text: the paper's run, DeepScaleR on Qwen2.5-VL-3B-Instruct"),
    "fre-multi": ("train_fre.py", "stage 1, FRE-Multi: the paper's multimodal variant on VerMulti"),
    "debug": ("train_fre.py", "stage 1 on the tiny random model and bundled data: seconds on a CPU"),
    "classroom": ("train_fre.py", "the classroom's FRE-Text: the warm tiny model, minutes on a CPU"),
    "classroom-multi": ("train_fre.py", "the classroom's FRE-Multi (drawn problems)"),
    "mgt-classroom": ("train_mgt.py", "the classroom's stage 2, geometry (train_mgt.py --preset classroom)"),
    "mgt-geo": ("train_mgt.py", "stage 2, MGT-Geo: the paper's geometry run from a FRE-Text checkpoint"),
    "mgt-percereason": ("train_mgt.py", "stage 2, MGT-PerceReason: the paper's perception-heavy reasoning run"),
    "mgt-sokoban": ("train_mgt.py", "stage 2, MGT-Sokoban: the paper's planning game"),
    "mgt-football": ("train_mgt.py", "stage 2, football: our own game, on Sokoban's recipe"),
    "direct-rl-geo": ("train_mgt.py", "the paper's ablation: MGT-Geo's recipe from the base model, no stage 1"),
    "geo-debug": ("train_mgt.py", "MGT-Geo at debug size on bundled diagrams (--init a debug checkpoint)"),
    "percereason-debug": ("train_mgt.py", "MGT-PerceReason at debug size on bundled image rows"),
    "sokoban-debug": ("train_mgt.py", "MGT-Sokoban at debug size on 16 generated levels"),
    "football-debug": ("train_mgt.py", "football at debug size on 16 generated situations"),
    "direct-rl-geo-debug": ("train_mgt.py", "Direct-RL-Geo at debug size, from the tiny random model"),
    "dapo": ("train_fre.py", "DAPO's recipe (clip-higher, token-level loss, dynamic sampling, overlong shaping)"),
    "dr-grpo": ("train_fre.py", "Dr. GRPO's recipe (no std scaling, no length normalization)"),
    "gspo": ("train_fre.py", "GSPO's recipe (the sequence-level importance ratio)"),
}
