"""Rule checks on hostile text stay linear: time on adversarial inputs against benign text of the same length.

    python bench/reward_adversarial.py [--repeat 5]

A regex that backtracks shows up as a ratio far above 1 (and grows with the length); linear checks stay near 1.
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rewards import extract_choice, format_reward  # noqa: E402

N = 200_000
CASES = {
    "format_reward": (format_reward, [
        "<think>" + "a" * N,
        "<think>" + "</think><answer>" * (N // 16) + "x",
        "<think>" * (N // 7),
        "<think>a</think><answer>" + "</answer" * (N // 8),
        "<think>" + "a" * N + "</think><answer>" + "b" * N + "</answer>",
    ]),
    "extract_choice": (extract_choice, [
        "answer" + " " * 9_990, "option" + " " * 9_990 + "is" + " " * 9_990, r"\boxed{" * 1_200, "(" * 10_000,
        "<answer>" * 1_250, "a" * N,
    ]),
}


def best_time(fn, texts, repeat):
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        for text in texts:
            fn(text)
        best = min(best, time.perf_counter() - t)
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(f"{'check':<16}{'adversarial':>14}{'benign':>12}{'ratio':>8}")
    for name, (fn, texts) in CASES.items():
        benign = ["The answer is 42. " * (len(t) // 18 + 1) for t in texts]
        adv, base = best_time(fn, texts, args.repeat), best_time(fn, benign, args.repeat)
        print(f"{name:<16}{adv * 1e3:>12.2f}ms{base * 1e3:>10.2f}ms{adv / base:>8.2f}")


if __name__ == "__main__":
    main()
