"""Compile every Triton kernel configuration the code can launch, ahead of time, for real GPUs - without one.

    python -m lmm_kernels.compile_check            # table: kernel, target, registers, spills, shared memory
    python -m lmm_kernels.compile_check --json     # the same as JSON lines (used by tests/test_kernels_compile.py)

Each module lists its launches in `kernel_configs()` (fn, signature, constexprs, attrs, num_warps, num_stages);
`triton.compile(ASTSource(...), target=GPUTarget("cuda", 80 | 90, 32))` runs the whole compiler with the wheel's
ptxas. Registers and spills come from `ptxas -v` (a CompiledKernel only knows them once a driver loads it), shared
memory from the compiled metadata. Must run without TRITON_INTERPRET (under the interpreter kernels are not JIT
functions): this module refuses to run otherwise.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor

from lmm_kernels.interpret import interpreting

# Max dynamic shared memory per block (bytes): A100 (sm_80) 163 KB, H100 (sm_90) 227 KB.
SHARED_LIMIT = {80: 166912, 90: 232448}
MODULES = ("lmm_kernels.attention_triton", "lmm_kernels.logprob_triton", "lmm_kernels.policy_loss_triton")


def all_configs() -> list[tuple[str, int]]:
    """(module, index) of every configuration of every kernel module."""
    import importlib
    return [(m, i) for m in MODULES for i in range(len(importlib.import_module(m).kernel_configs()))]


def compile_entry(entry: dict, capability: int):
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    src = ASTSource(entry["fn"], entry["signature"], entry["constexprs"], entry.get("attrs"))
    return triton.compile(src, target=GPUTarget("cuda", capability, 32),
                          options=dict(num_warps=entry["num_warps"], num_stages=entry["num_stages"]))


def ptxas_usage(ptx: str, capability: int) -> dict:
    """Registers, spill bytes and stack frame from `ptxas -v` on the kernel's PTX."""
    import triton
    ptxas = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "ptxas")
    arch = f"sm_{capability}a" if capability >= 90 else f"sm_{capability}"
    with tempfile.NamedTemporaryFile("w", suffix=".ptx") as f:
        f.write(ptx)
        f.flush()
        out = subprocess.run([ptxas, f"-arch={arch}", "-v", f.name, "-o", os.devnull], capture_output=True,
                             text=True, check=True)
    text = out.stdout + out.stderr

    def grab(pattern):
        return sum(int(x) for x in re.findall(pattern, text))

    return dict(registers=max((int(x) for x in re.findall(r"Used (\d+) registers", text)), default=0),
                spill_bytes=grab(r"(\d+) bytes spill stores") + grab(r"(\d+) bytes spill loads"),
                stack=grab(r"(\d+) bytes stack frame"))


def check(job: tuple[str, int, int]) -> dict:
    import importlib
    module, index, capability = job
    entry = importlib.import_module(module).kernel_configs()[index]
    compiled = compile_entry(entry, capability)
    row = dict(module=module, name=entry["name"], capability=capability, num_warps=entry["num_warps"],
               num_stages=entry["num_stages"], shared=compiled.metadata.shared,
               **ptxas_usage(compiled.asm["ptx"], capability))
    row["fits"] = row["spill_bytes"] == 0 and row["shared"] <= SHARED_LIMIT[capability]
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--capabilities", type=int, nargs="+", default=[80, 90])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--json", action="store_true", help="one JSON object per configuration")
    args = parser.parse_args(argv)
    if interpreting():
        raise SystemExit("run without TRITON_INTERPRET: the interpreter replaces the kernels being compiled")
    jobs = [(m, i, cap) for m, i in all_configs() for cap in args.capabilities]
    with ProcessPoolExecutor(args.workers) as pool:
        rows = list(pool.map(check, jobs))
    for row in rows:
        if args.json:
            print(json.dumps(row))
        else:
            print(f"{row['name']:44s} sm_{row['capability']}  warps {row['num_warps']} stages {row['num_stages']}  "
                  f"regs {row['registers']:3d}  spill {row['spill_bytes']:4d} B  shared {row['shared']:6d} B"
                  f"{'' if row['fits'] else '  <-- DOES NOT FIT'}")
    bad = [r for r in rows if not r["fits"]]
    print(f"{len(rows) - len(bad)} fit, {len(bad)} do not ({len(rows)} configurations)", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
