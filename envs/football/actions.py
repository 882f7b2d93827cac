"""Football actions: their names, the VLM prompt that lists them, and `normalize_action`."""
from __future__ import annotations

import math

_D = math.sqrt(0.5)
DIRECTIONS = {
    "left": (-1.0, 0.0), "top_left": (-_D, -_D), "top": (0.0, -1.0), "top_right": (_D, -_D),
    "right": (1.0, 0.0), "bottom_right": (_D, _D), "bottom": (0.0, 1.0), "bottom_left": (-_D, _D),
}
KICKS = ("short_pass", "long_pass", "shot")
ACTIONS = tuple(DIRECTIONS) + KICKS + ("sprint", "dribble", "idle")

PROMPT = (
    "The image is a top-down view of a football (soccer) pitch. You control the BLUE team, which attacks the goal "
    "on the RIGHT side of the image. Blue circles are your players; the blue player with the white ring (and the "
    "white marker above it) is the one you control: the ball carrier, or the blue player closest to the ball. Red "
    "circles are opponents and the yellow circle is the opponent goalkeeper. The small white dot is the ball; a "
    "white line from a rolling ball shows where it is going.\n"
    "Choose the action of the controlled player for the next second of play. Carrying the ball toward the goal, "
    "getting past opponents, clean forward passes, shots on target and goals are good; losing the ball (tackle, "
    "interception, ball out of play, goalkeeper save) is bad.\n"
    "Allowed actions:\n"
    "- left, top_left, top, top_right, right, bottom_right, bottom, bottom_left: run in that direction of the "
    "image (with the ball if you have it)\n"
    "- short_pass: ground pass to the nearest open teammate ahead\n"
    "- long_pass: lofted pass to the open teammate furthest forward\n"
    "- shot: shoot at the far corner of the goal (less accurate from far away)\n"
    "- sprint: run faster in the current direction\n"
    "- dribble: run slower in the current direction, keeping the ball close (harder to tackle)\n"
    "- idle: stand still\n"
    "Think about the situation inside <think></think>, then give exactly one action name inside "
    "<answer></answer>, e.g. <think>...</think><answer>right</answer>."
)


def normalize_action(text: str) -> str | None:
    """The action named by `text` (case-insensitive, surrounding whitespace allowed), else None."""
    if not isinstance(text, str) or len(text) > 64:
        return None
    name = text.strip().lower()
    return name if name in ACTIONS else None
