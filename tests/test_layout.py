"""The layout a newcomer can guess: imports point one way (entry scripts and bench -> evaluation/ -> rl/ ->
lmm_kernels/, data/, rewards/ -> envs/), with no import cycle between the project's modules nor between its packages (imports
inside functions included); lmm_kernels/ is a leaf; no non-test file past 600 lines except a Triton kernel file."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("data", "envs", "lmm_kernels", "rewards", "rl", "evaluation")
MAX_LINES = 600


def _modules() -> dict[str, Path]:
    """Every project module by its dotted name: the packages' modules, the entry scripts at the top (`train_fre`, ...)
    and bench/'s scripts (`bench.vs_trl`, ...). The scripts only import: nothing may import them."""
    out = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    for path in [*ROOT.glob("*.py"), *(ROOT / "bench").glob("*.py")]:
        out[".".join(path.relative_to(ROOT).with_suffix("").parts)] = path
    return out


def _resolve(target: str, importer: str, modules: dict) -> str:
    """The project module that an imported dotted name lives in ("" for none). A bench script runs with bench/ first
    on sys.path, so its bare `import generation` is bench/generation.py."""
    for t in ([f"bench.{target}"] if importer.startswith("bench.") else []) + [target]:
        while t and t not in modules:
            t = t.rpartition(".")[0]
        if t:
            return t
    return ""


def _imports(name: str, path: Path, modules: dict) -> set[str]:
    """Project modules that `name` imports anywhere in its file. `import a.b` and `from a.b import c` import the module
    a.b (and a.b.c where that is a module); a package's __init__ is imported only where a name is taken from it
    (`import a`, `from a import f`, `from . import f`), so `from lmm_kernels import interpreting` in a kernels module is an
    edge to lmm_kernels/__init__, while `from lmm_kernels.interpret import interpreting` is not (the package a module lives
    in is already imported when the module runs; what importing a package from outside runs is the package test's)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            # each name is a submodule of base, or a name defined in base (for a package: in its __init__)
            targets = [f"{base}.{a.name}" if _resolve(f"{base}.{a.name}", name, modules) == f"{base}.{a.name}"
                       else base for a in node.names]
        else:
            continue
        for t in targets:
            t = _resolve(t, name, modules)
            if t and t != name:
                found.add(t)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _package(module: str) -> str:
    top = module.partition(".")[0]
    return top if top in PACKAGES else ""


def _package_imports(graph: dict) -> dict[tuple[str, str], list[str]]:
    """(package, package it imports) -> the module imports behind that edge ("rl.monitor -> evaluation")."""
    edges = {}
    for src in sorted(graph):
        for dst in sorted(graph[src]):
            p, q = _package(src), _package(dst)
            if p and q and p != q:
                edges.setdefault((p, q), []).append(f"{src} -> {dst}")
    return edges


def _cycles(nodes, edges) -> list[list[str]]:
    """Every simple cycle of the directed graph, each once (starting at its smallest node)."""
    out = []

    def walk(path):
        for nxt in sorted(n for n in nodes if (path[-1], n) in edges):
            if nxt == path[0]:
                out.append(path + [nxt])
            elif nxt > path[0] and nxt not in path:
                walk(path + [nxt])

    for start in sorted(nodes):
        walk([start])
    return out


def test_no_import_cycle():
    graph = _graph()
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycle = stack[stack.index(nxt):] + [nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name)


def test_no_package_import_cycle():
    """A package imports another where any of its modules does (inside functions too): no cycle between them."""
    edges = _package_imports(_graph())
    found = [" -> ".join(c) + "  (" + "; ".join(edges[a, b][0] for a, b in zip(c, c[1:])) + ")"
             for c in _cycles(PACKAGES, edges)]
    assert not found, "package import cycle: " + " | ".join(found)


def test_kernels_is_a_leaf():
    """lmm_kernels/ (the kernels and their torch references) imports no other package of the project."""
    edges = _package_imports(_graph())
    found = [imp for (p, q), imps in edges.items() if p == "lmm_kernels" for imp in imps]
    assert not found, "lmm_kernels/ must import no other project package: " + ", ".join(found)


def test_rl_never_imports_evaluation():
    """The trainer is handed an evaluate function; rl/ never imports evaluation/."""
    found = _package_imports(_graph()).get(("rl", "evaluation"), [])
    assert not found, "rl/ must not import evaluation/: " + ", ".join(found)


def test_entry_scripts_and_bench_only_import():
    """Nothing in a package imports an entry script or a bench script (the arrows point down from them)."""
    graph = _graph()
    found = [f"{src} -> {dst}" for src in sorted(graph) if _package(src)
             for dst in sorted(graph[src]) if not _package(dst)]
    assert not found, "a package imports a script: " + ", ".join(found)


def test_no_file_past_600_lines_but_triton_kernels():
    long = []
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT)
        if rel.parts[0] in ("tests", ".git") or path.name.endswith("_triton.py"):
            continue
        n = len(path.read_text().splitlines())
        if n > MAX_LINES:
            long.append(f"{rel} ({n} lines)")
    assert not long, "split along its sections: " + ", ".join(long)


def test_no_package_of_ours_shadows_the_ecosystems():
    """bitsandbytes and transformers import the Hugging Face `kernels` package by that name. With the project first on
    sys.path, as when one of our scripts runs, importing them picks up nothing of ours and prints nothing."""
    assert not (ROOT / "kernels").exists()
    code = ("import importlib.util, sys; sys.path.insert(0, '.'); import rl, bitsandbytes, "
            "transformers.integrations.hub_kernels; spec = importlib.util.find_spec('kernels'); "
            "print(spec.origin if spec else 'none')")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not proc.stdout.strip().startswith(str(ROOT)) and proc.stderr == "", proc.stdout + proc.stderr


def test_kernels_live_in_kernels():
    assert not (ROOT / "ops").exists()
    import lmm_kernels
    assert set(lmm_kernels.Kernels.__dataclass_fields__) >= {"attn_implementation", "logprobs", "policy_losses"}
