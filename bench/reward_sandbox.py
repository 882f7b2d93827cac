"""The reward sandbox, proven on a seeded corpus of hostile completions (tests/hostile_corpus.py), through every reward.

    python bench/reward_sandbox.py                        # 10,000 items, 2 workers, 5 s per check
    python bench/reward_sandbox.py --n 2000 --timeout 2   # a quicker look

Printed per reward: checks per second, hostile items paid, controls not paid, time-outs, errors, partial parses,
worker restarts and failed starts, the longest check, the workers' peak memory. Then a chaos pass: r1_math's
verifier scores --chaos items again (the quick families: every check finishes well inside its limit) while worker
processes are SIGKILLed every --kill-every seconds; every result must be the clean pass's, or an "error" where a
worker died under it (else it is "misaligned"); a batch that raises or comes back short is "lost". Last, the totals: escapes (the canary file, or any file, that a payload would
have created in the sandbox's folder), hostile rewarded, lost and misaligned batches. Exit status 1 if any of those,
or a control left unpaid, is not 0.
"""

import argparse
import os
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # the project, and the test corpus

from hostile_corpus import CHOICE_REWARDS, MATH_REWARDS, corpus  # noqa: E402
from rewards import REWARDS, get_reward  # noqa: E402

SLOW_FAMILIES = ("tower", "factorial", "memory", "megabyte")  # checks that run into the time limit


def game_metas():
    from data.games import football_samples, sokoban_samples

    return {"sokoban": sokoban_samples(1, seed=0)[0].meta, "football": football_samples(1, seed=0)[0].meta}


class MemoryWatch(threading.Thread):
    """Polls the reward's worker processes: the largest peak resident size (VmHWM) seen and their RLIMIT_AS."""

    def __init__(self, pool):
        super().__init__(daemon=True)
        self.pool, self.peak_kb, self.limit, self.stop = pool, 0, None, threading.Event()

    def run(self):
        while not self.stop.wait(0.02):
            for pid in list(self.pool.pids):
                try:
                    with open(f"/proc/{pid}/status") as f:
                        hwm = next((int(ln.split()[1]) for ln in f if ln.startswith("VmHWM:")), 0)
                    self.peak_kb = max(self.peak_kb, hwm)
                    with open(f"/proc/{pid}/limits") as f:
                        limit = next(ln.split()[3] for ln in f if ln.startswith("Max address space"))
                    if limit.isdigit():  # set by the worker's start-up, after the first moments
                        self.limit = max(self.limit or 0, int(limit))
                except (OSError, StopIteration):
                    pass


class Killer(threading.Thread):
    """SIGKILLs a random busy worker of the pool (one running a check) every `every` seconds."""

    def __init__(self, pool, every: float, seed: int = 0):
        super().__init__(daemon=True)
        self.pool, self.every, self.kills, self.stop = pool, every, 0, threading.Event()
        self.rng = random.Random(seed)

    def run(self):
        while not self.stop.wait(self.every):
            pids = self.pool.busy_pids
            if pids:
                try:
                    os.kill(self.rng.choice(pids), 9)
                    self.kills += 1
                except OSError:
                    pass


def score(fn, items, metas, batch: int):
    """(results [(total, accuracy)], counts, lost batches, seconds)."""
    results, counts, lost = [], Counter(), 0
    t = time.perf_counter()
    for i in range(0, len(items), batch):
        part = items[i:i + batch]
        try:
            out = fn([it.response for it in part], [it.gold for it in part], metas[i:i + batch])
            total = out.components["total"]
            acc = out.components.get("accuracy", [0.0] * len(part))
            if len(total) != len(part) or len(acc) != len(part) or any(x is None for x in total):
                raise ValueError("short batch")
            results.extend(zip(total, acc))
            counts.update(out.counts)
        except Exception as e:  # noqa: BLE001 - a lost batch is the finding
            print(f"  batch {i // batch}: lost ({type(e).__name__}: {str(e)[:120]})")
            lost += 1
            results.extend([(None, None)] * len(part))
    return results, counts, lost, time.perf_counter() - t


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10_000, help="corpus size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds per check (training's default)")
    parser.add_argument("--batch", type=int, default=256, help="completions per reward call")
    parser.add_argument("--chaos", type=int, default=2000, help="items scored again while workers are killed")
    parser.add_argument("--kill-every", type=float, default=0.5, help="seconds between kills in the chaos pass")
    parser.add_argument("--rewards", default=",".join(REWARDS), help="comma-separated reward names")
    args = parser.parse_args()

    sandbox = Path(tempfile.mkdtemp(prefix="reward-sandbox-"))
    canary = str(sandbox / "CANARY")
    items = corpus(args.n, seed=args.seed, canary=canary)
    kinds = Counter(it.expect for it in items)
    print(f"corpus: {len(items)} items (seed {args.seed}): {kinds['hostile']} hostile, {kinds['right']} controls, "
          f"{kinds['free']} not judged; families: "
          + ", ".join(f"{k} {v}" for k, v in sorted(Counter(it.family for it in items).items())))
    games = game_metas()
    base_metas = [it.meta for it in items]
    names = [n for n in args.rewards.split(",") if n]
    totals = Counter()
    clean = {}
    hdr = (f"{'reward':<16}{'checks/s':>9}{'hostile paid':>13}{'ctrl unpaid':>12}{'free paid':>10}{'timeouts':>9}"
           f"{'errors':>7}{'partial':>8}{'restarts':>9}{'start fail':>11}{'max check':>10}{'peak MiB':>9}")
    print(hdr)
    for name in names:
        metas = [{**m, **games.get(name, {})} for m in base_metas]
        fn = get_reward(name, workers=args.workers, timeout=args.timeout)
        pool = getattr(getattr(fn, "verifier", None), "pool", None)
        watch = MemoryWatch(pool) if pool else None
        if watch:
            watch.start()
        try:
            if pool:  # start-up is not scoring time
                fn(["<think>t</think><answer>\\boxed{1}</answer>"], ["1"], [{"domain": "math"}])
            results, counts, lost, secs = score(fn, items, metas, args.batch)
            max_check = pool.max_check_s if pool else None
        finally:
            if watch:
                watch.stop.set()
            fn.close()
        clean[name] = results
        games_reward = name in ("sokoban", "football")
        hostile_paid = right_unpaid = free_paid = 0
        for it, (total, acc) in zip(items, results):
            if total is None:
                continue
            paid = total > 0 if games_reward else (acc or 0) > 0
            if it.expect == "hostile" and paid and name != "format":
                hostile_paid += 1
            if it.expect == "free" and paid:
                free_paid += 1
            payers = MATH_REWARDS if it.domain == "math" else CHOICE_REWARDS
            if it.expect == "right" and name in payers and not paid:
                right_unpaid += 1
        totals.update(hostile_paid=hostile_paid, right_unpaid=right_unpaid, lost=lost,
                      timeouts=counts.get("reward/timeout", 0), errors=counts.get("reward/error", 0),
                      checks=len(items), seconds=secs)
        peak = f"{watch.peak_kb / 1024:.0f}" if watch and watch.peak_kb else "-"
        print(f"{name:<16}{len(items) / secs:>9.0f}{hostile_paid:>13}{right_unpaid:>12}{free_paid:>10}"
              f"{counts.get('reward/timeout', 0):>9}{counts.get('reward/error', 0):>7}"
              f"{counts.get('reward/partial_parse', 0):>8}{counts.get('reward/worker_restarts', 0):>9}"
              f"{counts.get('reward/worker_start_failures', 0):>11}"
              f"{(f'{max_check:.2f}s' if max_check is not None else '-'):>10}{peak:>9}")
        if watch:
            limit = f"{watch.limit / 2**20:.0f} MiB" if watch.limit else "not seen"
            print(f"{'':<16}worker address-space limit {limit}; a timed-out check ran at most "
                  f"{pool.max_kill_delay_s:.2f} s past its limit before its worker was killed")

    misaligned = chaos_lost = kills = 0
    if args.chaos and "r1_math" in clean:
        quick = [i for i, it in enumerate(items) if it.family not in SLOW_FAMILIES][:args.chaos]
        fn = get_reward("r1_math", workers=args.workers, timeout=args.timeout)
        errors = restarts = 0
        try:
            fn.verifier.score(["\\boxed{1}"], ["1"])
            killer = Killer(fn.verifier.pool, args.kill_every, args.seed)
            killer.start()
            try:
                for b in range(0, len(quick), args.batch):
                    idx = quick[b:b + args.batch]
                    try:
                        got = fn.verifier.score([items[i].response for i in idx], [items[i].gold for i in idx])
                    except Exception as e:  # noqa: BLE001
                        print(f"  chaos batch {b // args.batch}: lost ({type(e).__name__}: {str(e)[:120]})")
                        chaos_lost += 1
                        continue
                    if len(got) != len(idx) or any(r is None for r in got):
                        chaos_lost += 1
                        continue
                    for i, r in zip(idx, got):
                        errors += r.status != "ok"
                        # a result is the clean pass's, or an error where a worker died under it
                        if r.status == "ok" and r.reward != clean["r1_math"][i][1]:
                            misaligned += 1
                        elif r.status not in ("ok", "error"):
                            misaligned += 1  # a quick check never times out: a late or lost result
            finally:
                killer.stop.set()
            kills, restarts = killer.kills, fn.verifier.stats["restarts"]
        finally:
            fn.close()
        print(f"chaos: r1_math on {len(quick)} items, {kills} workers SIGKILLed: {chaos_lost} lost batches, "
              f"{misaligned} misaligned results, {errors} scored as errors (a worker died under them), "
              f"{restarts} restarts")

    leftovers = [p.name for p in sandbox.iterdir()]
    escapes = len(leftovers)
    print(f"\nescapes: {escapes}{' (' + ', '.join(leftovers) + ')' if leftovers else ''}")
    print(f"hostile rewarded: {totals['hostile_paid']}")
    print(f"controls not paid: {totals['right_unpaid']}")
    print(f"lost batches: {totals['lost'] + chaos_lost}")
    print(f"misaligned results: {misaligned}")
    print(f"timeouts: {totals['timeouts']}")
    print(f"errors: {totals['errors']}")
    print(f"checks: {totals['checks']} in {totals['seconds']:.0f} s, {totals['checks'] / totals['seconds']:.0f} per s")
    bad = escapes + totals["hostile_paid"] + totals["right_unpaid"] + totals["lost"] + chaos_lost + misaligned
    for p in sandbox.iterdir():
        p.unlink()
    sandbox.rmdir()
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
