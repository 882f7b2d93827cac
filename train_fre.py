"""Stage 1 of LMM-R1, Foundational Reasoning Enhancement: rule-based RL on verifiable math.

    python train_fre.py --data deepscaler                 # FRE-Text on Qwen2.5-VL-3B-Instruct (the paper's run)
    python train_fre.py --preset fre-multi --data mathv60k_message.jsonl
    python train_fre.py --preset debug --out runs/debug   # tiny offline model + bundled data, minutes on a CPU
"""

import sys

from rl.config import parse_config


def main(argv=None):
    # Heavy imports here, not at the top: reward workers are spawned processes that re-import this script.
    from data.loaders import DataError, load_dataset_by_name
    from rewards import get_reward
    from rl.trainer import Trainer

    cfg = parse_config(argv, default_preset="fre-text", description=__doc__.splitlines()[0])
    try:
        samples = load_dataset_by_name(cfg.data, on_error=cfg.on_bad_row, max_samples=cfg.max_samples or None)
    except (FileNotFoundError, DataError) as e:
        raise SystemExit(f"error: {e}") from None
    print(f"{len(samples)} prompts from {cfg.data}; model {cfg.model}; preset {cfg.preset}", file=sys.stderr)
    reward_fn = get_reward(cfg.reward, workers=cfg.reward_workers, timeout=cfg.reward_timeout)
    try:
        final = Trainer(cfg, samples, reward_fn).train()
    finally:
        reward_fn.close()
    print(f"final checkpoint: {final}", file=sys.stderr)


if __name__ == "__main__":
    main()
