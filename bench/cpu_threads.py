"""Why a CPU run of a small model takes one thread by default: the classroom run at 1 thread and at all cores, on
quiet cores and beside one busy process, in one run.

    python bench/cpu_threads.py                      # 25 classroom steps (no evaluation) per case
    python bench/cpu_threads.py --steps 100 --limit 1800

Each case is `train_fre.py --preset classroom --max-steps N --eval-benchmarks "" --no-plots --cpu-threads T` in a
fresh process (the warm model is built first, once, outside the timings); "beside other work" starts a process that
keeps one core busy (a pure-Python loop) for the whole case. A case that runs past --limit seconds is stopped and
shown as "> limit". Ratios are against 1 thread on quiet cores.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUSY = "import time\nend = time.time() + 86400\nwhile time.time() < end:\n    pass\n"


def run_case(out: Path, steps: int, threads: int, busy: bool, limit: float) -> float | None:
    """Wall seconds of one classroom run, or None when it ran past `limit`."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    other = subprocess.Popen([sys.executable, "-c", BUSY]) if busy else None
    try:
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, str(ROOT / "train_fre.py"), "--preset", "classroom", "--out", str(out),
                               "--max-steps", str(steps), "--eval-benchmarks", "", "--no-plots", "--cpu-threads",
                               str(threads), "--overwrite"], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=limit)
        if proc.returncode:
            raise SystemExit(f"the run failed:\n{proc.stderr[-2000:]}")
        return time.perf_counter() - start
    except subprocess.TimeoutExpired:
        return None
    finally:
        if other is not None:
            other.kill()
            other.wait()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=25, help="classroom steps per case")
    p.add_argument("--limit", type=float, default=900.0, help="seconds before a case is stopped")
    args = p.parse_args()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    with tempfile.TemporaryDirectory() as tmp:
        run_case(Path(tmp) / "warm", 1, 1, False, args.limit * 4)  # builds (or finds) the warm model
        rows = []
        for busy in (False, True):
            for threads in sorted({1, cores}):
                seconds = run_case(Path(tmp) / f"t{threads}{busy}", args.steps, threads, busy, args.limit)
                rows.append((busy, threads, seconds))
                print(f"{'beside other work' if busy else 'quiet cores':18s} {threads} thread(s): "
                      f"{f'{seconds:.1f} s' if seconds else f'> {args.limit:.0f} s'}", flush=True)
    base = rows[0][2]
    print(f"\n{cores} cores, {args.steps} classroom steps; time / (1 thread, quiet cores):")
    for busy, threads, seconds in rows:
        ratio = f"{seconds / base:.2f}x" if seconds else f"> {args.limit / base:.1f}x"
        print(f"  {'beside other work' if busy else 'quiet cores':18s} {threads} thread(s)  {ratio}")


if __name__ == "__main__":
    main()
