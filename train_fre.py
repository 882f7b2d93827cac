"""Stage 1 of LMM-R1, Foundational Reasoning Enhancement: rule-based RL on verifiable math.

    python train_fre.py --data deepscaler                 # FRE-Text on Qwen2.5-VL-3B-Instruct (the paper's run)
    python train_fre.py --preset fre-multi --data vermulti:/data/VerMulti
    python train_fre.py --preset debug --out runs/debug   # tiny offline model + bundled data, seconds on a CPU
    python train_fre.py --plan --gpu-mem-gb 40 [--nproc 8]   # memory per GPU and phase, the knobs; loads nothing
"""

from rl.config import parse_command_line
from rl.guards import stop_at_once


def main(argv=None):
    cfg, command = parse_command_line(argv, default_preset="fre-text", description=__doc__)
    if command.plan:  # the memory plan (rl/memory_plan.py): nothing is loaded
        from rl.memory_plan import print_plan
        print_plan(cfg, command.gpu_mem_gb, command.nproc)
        return
    # Imported here, not at the top: reward workers are spawned processes that re-import this script.
    stop_at_once("while starting (nothing new to save)")  # SIGTERM / Ctrl-C: one line
    from rl.run import check_data, run
    if command.check_data:  # the data report: nothing but the data is loaded
        check_data(cfg, command.check_data_max_bad)
        return
    from evaluation import TrainingEvaluator  # --eval-benchmarks: handed to the run (rl/ imports no evaluation)
    run(cfg, make_evaluator=TrainingEvaluator)


if __name__ == "__main__":
    main()
