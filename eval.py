"""Evaluate a checkpoint on the paper's benchmarks in one command, judge-free, and put the results beside the paper's.

    python eval.py --model runs/fre-text/final                          # every benchmark: greedy, 4096 new tokens
    python eval.py --model Qwen/Qwen2.5-VL-3B-Instruct --benchmarks text   # MATH-500, GPQA-diamond, OlympiadBench
    python eval.py --model runs/fre-text/final --benchmarks math500 --samples 8 --temperature 1   # pass@8, mean@8
    python eval.py --model runs/debug/final --benchmarks all --limit 2 --max-new-tokens 16      # offline: fixtures
    python eval.py --compare Qwen/Qwen2.5-VL-3B-Instruct runs/fre-text/final   # side by side, with deltas
    python eval.py --list                                               # the benchmarks and where they come from
    python eval.py --export vlmevalkit --out runs/fre-text/final/eval   # predictions for VLMEvalKit and its judges

Writes <out>/results.json, <out>/results.md (the table), <out>/responses.jsonl (every response, what was read
from it and whether it was right) and <out>/samples.html (the first items of each benchmark with their images, as a
page). --out defaults to <model>/eval for a local checkpoint, evals/<org>__<name> for a
hub id. Benchmarks: 'all', a group (text, multimodal, games, classroom) or names, comma-separated.
"""

import argparse
import sys
from pathlib import Path

from rl.config import Parser


def build_parser() -> argparse.ArgumentParser:
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="checkpoint folder or hub id")
    p.add_argument("--benchmarks", default="all", help="'all', text, multimodal, games, classroom (the toy sets of "
                   "classroom.py, not in 'all'), or names, comma-separated")
    p.add_argument("--limit", type=int, default=0, help="first N items of each benchmark (0 = all)")
    p.add_argument("--samples", type=int, default=1, help="responses per question; k > 1 reports pass@k and mean@k")
    p.add_argument("--temperature", type=float, default=None,
                   help="0 = greedy (the default with --samples 1); 1.0 by default with --samples > 1")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling (with --temperature > 0)")
    p.add_argument("--max-new-tokens", type=int, default=4096, help="max generated tokens per response")
    p.add_argument("--batch-size", type=int, default=8, help="questions per generate() call")
    p.add_argument("--source", default="auto", choices=["auto", "hub", "fixture"],
                   help="benchmark rows from the hub, the bundled fixtures, or auto: the hub, else the fixture "
                        "(marked 'fixture' in the table)")
    p.add_argument("--data", action="append", default=[], metavar="NAME=PATH",
                   help="read benchmark NAME from a local copy (data file or dataset folder); repeatable")
    p.add_argument("--env-samples", type=int, default=200,
                   help="items of the generated benchmarks (Sokoban, Football, classroom: fixed seeded sets)")
    p.add_argument("--max-pixels", type=int, default=640 * 28 * 28, help="images resized to at most this many pixels")
    p.add_argument("--min-pixels", type=int, default=4 * 28 * 28, help="images resized to at least this many pixels")
    p.add_argument("--device", default="auto", help="auto (cuda if available), cuda, cpu")
    p.add_argument("--dtype", default="auto", choices=["auto", "bf16", "fp32"], help="auto = bf16 on GPU, fp32 on CPU")
    p.add_argument("--attn", default="sdpa", help="attention implementation (sdpa, eager, flash_attention_2)")
    p.add_argument("--cpu-threads", type=int, default=0,
                   help="torch threads on a CPU; 0 = auto: OMP_NUM_THREADS if set, else 1 for models under 100M "
                        "parameters (more stall beside any other work), else all cores")
    p.add_argument("--workers", type=int, default=2,
                   help="processes that check math answers (0 = in this process, without a hard time limit)")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds per math check before it counts as wrong")
    p.add_argument("--out", default="", help="output folder (default <model>/eval, or evals/<org>__<name>)")
    p.add_argument("--compare", nargs=2, metavar=("A", "B"),
                   help="two results.json / eval folders / checkpoints side by side (a checkpoint without results "
                        "is evaluated first, with the flags above)")
    p.add_argument("--rescore", metavar="DIR",
                   help="score the saved responses of an earlier evaluation (its results.json and responses.jsonl) "
                        "again with today's rules, without generating; rewrites its results")
    p.add_argument("--export", choices=["vlmevalkit"],
                   help="also write the responses as VLMEvalKit prediction tables (<eval>/vlmevalkit/), for its own "
                        "scorer and LLM judges; with no --model or --rescore, exports the eval folder --out")
    p.add_argument("--lmu-data", default="", metavar="DIR",
                   help="VLMEvalKit's dataset tables (<Dataset>.tsv) for --export; default $LMUData, else ~/LMUData")
    p.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def default_out(model: str) -> Path:
    p = Path(model)
    return p / "eval" if p.is_dir() else Path("evals") / model.replace("/", "__")


def load_model(path: str, device: str, dtype: str, attn: str, min_pixels: int, max_pixels: int,
               cpu_threads: int = 0, log=print):
    """(model, processor), or SystemExit with one line saying what is wrong."""
    import torch

    from data import HUB_ID_RE
    from rl.policy import load_policy
    from rl.processor import set_image_pixels

    p = Path(path)
    if p.exists() and not ((p / "config.json").is_file() or (p / "adapter_config.json").is_file()):
        raise SystemExit(f"error: {path} is not a checkpoint folder (it has no config.json, nor a LoRA adapter's "
                         f"adapter_config.json)")
    if not p.exists() and not HUB_ID_RE.match(path):
        raise SystemExit(f"error: model not found: {path} (a checkpoint folder or a hub id org/name)")
    device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    torch_dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}.get(
        dtype, torch.bfloat16 if device.startswith("cuda") else torch.float32)
    try:
        model, processor = load_policy(path, torch_dtype, attn, device)
    except Exception as e:  # noqa: BLE001 - transformers raises many kinds; the user needs one line
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise SystemExit(f"error: cannot load the model {path}: {first}") from None
    set_image_pixels(processor, min_pixels, max_pixels)
    if device == "cpu":
        from rl.dist import use_cpu_threads
        log(use_cpu_threads(cpu_threads, model))
    return model, processor


def settings_from(args):
    from evaluation import EvalSettings

    if args.samples < 1:
        raise SystemExit("error: --samples must be at least 1")
    temperature = args.temperature if args.temperature is not None else (0.0 if args.samples == 1 else 1.0)
    if temperature == 0 and args.samples > 1:
        raise SystemExit("error: greedy decoding (--temperature 0) gives one response per question; "
                         "--samples > 1 needs --temperature > 0")
    paths = {}
    for item in args.data:
        name, sep, path = item.partition("=")
        if not sep or not path:
            raise SystemExit(f"error: --data expects NAME=PATH, got {item!r}")
        paths[name.strip().lower()] = path
    return EvalSettings(samples=args.samples, temperature=temperature, top_p=args.top_p,
                        max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
                        limit=args.limit or None, source=args.source, env_samples=args.env_samples, data_paths=paths)


def run_eval(args, model_path: str, out: Path) -> dict:
    from data.benchmarks import resolve_benchmark_names
    from evaluation import Scorer, evaluate

    try:
        names = resolve_benchmark_names(args.benchmarks)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    settings = settings_from(args)
    unknown = set(settings.data_paths) - set(names)
    if unknown:
        raise SystemExit(f"error: --data names benchmarks that are not evaluated: {', '.join(sorted(unknown))}")
    log = lambda msg: print(msg, file=sys.stderr)  # noqa: E731
    model, processor = load_model(model_path, args.device, args.dtype, args.attn, args.min_pixels, args.max_pixels,
                                  args.cpu_threads, log)
    with Scorer(workers=args.workers, timeout=args.timeout) as scorer:
        results = evaluate(model, processor, names, settings, scorer, out_dir=out, model_name=model_path,
                           progress=not args.quiet, log=log)
    log(f"wrote {out / 'results.json'}, {out / 'results.md'} and {out / 'responses.jsonl'}; what the model wrote: "
        f"{out / 'samples.html'}")
    return results


def results_of(args, path: str) -> tuple[dict, str]:
    """Results of a results.json / eval folder / checkpoint (evaluated now if it has none)."""
    from data import HUB_ID_RE
    from evaluation import load_results

    for candidate in (path, default_out(path)):
        try:
            return load_results(candidate), path
        except FileNotFoundError:
            continue
    p = Path(path)
    if (p / "config.json").is_file() or (not p.exists() and HUB_ID_RE.match(path)):
        return run_eval(args, path, default_out(path)), path
    return load_results(path), path  # raises: no results.json here


def export(args, eval_dir) -> None:
    """--export: the eval folder's responses as another kit's prediction files."""
    if args.export == "vlmevalkit":
        from evaluation.export import export_vlmevalkit

        export_vlmevalkit(eval_dir, args.lmu_data or None, log=lambda msg: print(msg, file=sys.stderr))


def list_benchmarks() -> str:
    from data.benchmarks import BENCHMARKS, GROUPS, UNSUPPORTED
    from evaluation.report import PAPER

    lines = []
    for name, b in BENCHMARKS.items():
        where = f"{b.hub_id} [{b.split}]" if b.hub_id else "generated"
        paper = f"; paper {PAPER[name]}" if name in PAPER else ""
        lines.append(f"{name:20s} {b.title:26s} {b.modality:5s}  {where}{paper}" + (f"  ({b.note})" if b.note else ""))
    lines += [f"{name:20s} not supported: {why}" for name, why in UNSUPPORTED.items()]
    lines.append("groups: " + ", ".join(GROUPS))
    return "\n".join(lines)


def main(argv=None):
    args = build_parser().parse_args(argv)
    from data import DataError

    try:
        if args.list:
            print(list_benchmarks())
            return
        if args.compare:
            from evaluation import compare_table

            (a, la), (b, lb) = results_of(args, args.compare[0]), results_of(args, args.compare[1])
            table = compare_table(a, b, a.get("model") or la, b.get("model") or lb)
            print(table)
            if args.out:
                Path(args.out).mkdir(parents=True, exist_ok=True)
                (Path(args.out) / "compare.md").write_text(table)
            return
        if args.rescore:
            from evaluation import Scorer, markdown_table
            from evaluation.runner import rescore

            with Scorer(workers=args.workers, timeout=args.timeout) as scorer:
                print(markdown_table(rescore(args.rescore, scorer)))
            export(args, args.rescore)
            return
        if args.export and not args.model:
            if not args.out:
                raise SystemExit("error: --export without --model exports an eval folder: name it with --out DIR")
            export(args, args.out)
            return
        if not args.model:
            raise SystemExit("error: --model <checkpoint folder or hub id> is required (or --compare A B, --rescore "
                             "DIR, --export with --out DIR, --list)")
        out = Path(args.out) if args.out else default_out(args.model)
        results = run_eval(args, args.model, out)
        export(args, out)
        from evaluation import markdown_table

        print(markdown_table(results))
    except (FileNotFoundError, ConnectionError, DataError) as e:
        msg = f"{e.filename}: {e.strerror}" if isinstance(e, FileNotFoundError) and e.filename else str(e)
        raise SystemExit(f"error: {msg}") from None


if __name__ == "__main__":
    main()
