"""Stage 2 of LMM-R1, Multimodal Generalization Training: continue from the FRE-Text checkpoint on one domain.

    python train_mgt.py --domain geo --init runs/fre-text/final --data vermulti-geo:/data/VerMulti   # MGT-Geo
    python train_mgt.py --domain percereason --init runs/fre-text/final --data vermulti:/data/VerMulti
    python train_mgt.py --domain sokoban --init runs/fre-text/final                               # generated levels
    python train_mgt.py --domain football --init runs/fre-text/final                              # generated scenes
    python train_mgt.py --preset sokoban-debug --init runs/debug/final --out runs/sokoban-debug  # CPU, offline
    python train_mgt.py --preset classroom --init runs/classroom/final   # the classroom's stage 2 (drawn geometry)

The reference model of the KL term is the --init checkpoint.
"""

import argparse
import sys

from rl.config import parse_command_line
from rl.guards import stop_at_once

DOMAINS = ("geo", "percereason", "sokoban", "football", "classroom")


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    for i, arg in enumerate(argv):  # --preset classroom here is the classroom's stage 2
        if arg == "--preset=classroom" or (arg == "classroom" and i and argv[i - 1] == "--preset"):
            argv[i] = arg.replace("classroom", "mgt-classroom")
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--domain", choices=DOMAINS, default="geo")
    known, rest = pre.parse_known_args(argv)
    cfg, command = parse_command_line(rest, default_preset=f"mgt-{known.domain}", aliases={"model": ["--init"]},
                                      description=__doc__ + "\n--domain {" + ",".join(DOMAINS)
                                      + "} picks the preset mgt-DOMAIN.")
    if command.plan:  # the memory plan (rl/memory_plan.py): nothing is loaded; without --init, on the 3B model
        from rl.memory_plan import print_plan
        print_plan(cfg, command.gpu_mem_gb, command.nproc)
        return
    if not cfg.model:
        raise SystemExit("error: --init <stage-1 checkpoint dir> is required (e.g. runs/fre-text/final)")
    stop_at_once("while starting (nothing new to save)")  # SIGTERM / Ctrl-C: one line
    from rl.run import check_data, run
    if command.check_data:  # the data report: nothing but the data is loaded
        check_data(cfg, command.check_data_max_bad)
        return
    from evaluation import TrainingEvaluator  # --eval-benchmarks: handed to the run (rl/ imports no evaluation)
    run(cfg, make_evaluator=TrainingEvaluator)


if __name__ == "__main__":
    main()
