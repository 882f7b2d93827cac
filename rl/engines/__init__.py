"""Generation engines, one module each, and their registry; the contract an engine meets and the front every caller
uses (`generate`) are in rl/rollout.py. This file imports nothing heavy: the command line takes its choices from
here."""

import importlib

ENGINES = {"ours": "rl.engines.ours", "hf": "rl.engines.hf"}  # name -> module providing generate_batch


def engine_module(name: str):
    """The module of engine `name`, imported on first use (an engine's optional packages cost nothing otherwise)."""
    if name not in ENGINES:
        raise ValueError(f"unknown rollout engine {name!r}; known: {', '.join(ENGINES)}")
    return importlib.import_module(ENGINES[name])
