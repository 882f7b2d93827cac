"""Environments for stage 2 (MGT), each rendered to an image for the VLM: Sokoban planning (`envs.sokoban`, its
names re-exported here) and a compact 2D football game (the package `envs.football`; its names stay there, since
it has its own `ACTIONS`, `PROMPT` and `render`)."""
from . import football, sokoban
from .sokoban import (
    ACTIONS, DELTAS, PROMPT, Level, SokobanEnv, generate_level, generate_levels, render, solve,
)

__all__ = ["ACTIONS", "DELTAS", "PROMPT", "Level", "SokobanEnv", "generate_level", "generate_levels", "render",
           "solve", "football", "sokoban"]
