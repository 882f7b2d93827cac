"""Stage 1 of LMM-R1, Foundational Reasoning Enhancement: rule-based RL on verifiable math.

    python train_fre.py --data deepscaler                 # FRE-Text on Qwen2.5-VL-3B-Instruct (the paper's run)
    python train_fre.py --preset fre-multi --data vermulti:/data/VerMulti
    python train_fre.py --preset debug --out runs/debug   # tiny offline model + bundled data, minutes on a CPU
    python train_fre.py --plan --gpu-mem-gb 40 [--nproc 8]   # memory per GPU and phase, the knobs; loads nothing
"""

from rl.config import parse_config


def main(argv=None):
    cfg = parse_config(argv, default_preset="fre-text", description=__doc__)
    if cfg.plan:  # the memory plan (rl/memory.py): nothing is loaded
        from rl.memory import print_plan
        print_plan(cfg)
        return
    # Imported here, not at the top: reward workers are spawned processes that re-import this script.
    from rl.run import run
    run(cfg)


if __name__ == "__main__":
    main()
