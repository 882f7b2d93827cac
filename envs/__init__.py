"""Environments for stage 2 (MGT): Sokoban planning from a rendered image."""
from .sokoban import (
    ACTIONS, DELTAS, PROMPT, Level, SokobanEnv, generate_level, generate_levels, render, solve,
)

__all__ = ["ACTIONS", "DELTAS", "PROMPT", "Level", "SokobanEnv", "generate_level", "generate_levels", "render",
           "solve"]
