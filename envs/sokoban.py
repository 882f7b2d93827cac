"""Sokoban for stage 2 (MGT): levels, generator, solver, simulator, renderer and the VLM prompt.

Written in the manner of gym-sokoban (mpSchrader/gym-sokoban), without depending on it:

* `Level`: an immutable puzzle (walls, targets, boxes, player), with ASCII (`to_text` / `from_text`, the usual
  XSB symbols) and JSON (`to_dict` / `from_dict`) forms, so it can live in a Sample's metadata.
* `generate_level`: gym-sokoban's recipe. A random walk carves the room's floor inside the wall border, the
  player and the targets (each holding its box) go on random floor cells, then REVERSE PLAY pulls the boxes away
  from their targets with random player moves, keeping the configuration with the best room score
  (box swaps x total box displacement). The level is then solved by `solve`, which records the optimal plan.
  No generated level starts with a box or the player on a target (as in gym-sokoban, whose room score is 0 while
  any target is covered); the released LMM-R1 verifier mishandles such levels (see rewards/sokoban.py).
* `solve`: breadth-first search over (player, boxes) with single moves as edges, so the plan is optimal in MOVES
  (every action counts, walking as well as pushing). Dead squares and 2x2 frozen blocks are pruned.
* `SokobanEnv`: the simulator with gym-sokoban's rewards (-0.1 a step, +1 box onto a target, -1 box off a target,
  +10 when every box is on a target). A box that starts on a target counts as placed from the start (stock
  gym-sokoban's reset starts the count at 0 and so pays a spurious +1 on the first step of such a level).
* `render`: a deterministic PIL image, one distinct sprite per tile kind.

Coordinates are (row, col) with (0, 0) the top-left cell. Actions are the strings in `ACTIONS`.
"""
from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Iterable, Sequence

import numpy as np
from PIL import Image, ImageDraw

__all__ = [
    "ACTIONS", "DELTAS", "Level", "SokobanEnv", "solve", "generate_level", "generate_levels", "render",
    "PROMPT", "STEP_PENALTY", "BOX_ON_TARGET_REWARD", "BOX_OFF_TARGET_PENALTY", "FINISHED_REWARD",
    "TILE_NAMES", "TILE_COLORS",
]

# gym-sokoban's push actions 1..4 are up, down, left, right.
ACTIONS = ("up", "down", "left", "right")
DELTAS = {"up": (-1, 0), "down": (1, 0), "left": (0, -1), "right": (0, 1)}

# gym-sokoban's SokobanEnv rewards.
STEP_PENALTY = -0.1
BOX_ON_TARGET_REWARD = 1.0
BOX_OFF_TARGET_PENALTY = -1.0
FINISHED_REWARD = 10.0

Pos = tuple[int, int]

# ASCII symbols (XSB). `-` and `_` are accepted as floor on input.
WALL, FLOOR, TARGET, BOX, BOX_ON_TARGET, PLAYER, PLAYER_ON_TARGET = "#", " ", ".", "$", "*", "@", "+"
_FLOOR_ALIASES = {" ", "-", "_"}


def _positions(cells: Iterable) -> frozenset:
    return frozenset((int(r), int(c)) for r, c in cells)


@dataclass(frozen=True)
class Level:
    """An immutable Sokoban position. Cells outside the grid count as walls.

    `solution` is optional provenance (the generator stores the optimal plan there); it is not part of equality.
    """

    width: int
    height: int
    walls: frozenset
    targets: frozenset
    boxes: frozenset
    player: Pos
    solution: tuple[str, ...] | None = field(default=None, compare=False)

    def __post_init__(self):
        set_ = object.__setattr__
        set_(self, "walls", _positions(self.walls))
        set_(self, "targets", _positions(self.targets))
        set_(self, "boxes", _positions(self.boxes))
        set_(self, "player", (int(self.player[0]), int(self.player[1])))
        if self.solution is not None:
            set_(self, "solution", tuple(str(a) for a in self.solution))
            if any(a not in DELTAS for a in self.solution):
                raise ValueError(f"solution has an unknown action: {self.solution}")
        if self.width < 1 or self.height < 1:
            raise ValueError("level must be at least 1x1")
        for name in ("walls", "targets", "boxes"):
            if not all(self._inside(p) for p in getattr(self, name)):
                raise ValueError(f"{name} outside the {self.height}x{self.width} grid")
        if not self._inside(self.player):
            raise ValueError("player outside the grid")
        if self.walls & (self.targets | self.boxes) or self.player in self.walls:
            raise ValueError("a wall shares a cell with a target, box or the player")
        if self.player in self.boxes:
            raise ValueError("the player shares a cell with a box")
        if not self.boxes or len(self.boxes) != len(self.targets):
            raise ValueError(f"need as many boxes as targets, at least one (boxes {len(self.boxes)}, "
                             f"targets {len(self.targets)})")

    def _inside(self, p: Pos) -> bool:
        return 0 <= p[0] < self.height and 0 <= p[1] < self.width

    @property
    def num_boxes(self) -> int:
        return len(self.boxes)

    @property
    def solved(self) -> bool:
        """True when every box is on a target."""
        return self.boxes == self.targets

    def is_free(self, p: Pos) -> bool:
        """Inside the grid and not a wall (boxes not considered)."""
        return self._inside(p) and p not in self.walls

    def with_state(self, player: Pos, boxes: Iterable[Pos]) -> "Level":
        """The same room with another player / box placement (and no stored solution)."""
        return Level(self.width, self.height, self.walls, self.targets, frozenset(boxes), player)

    def tile(self, p: Pos) -> str:
        """The ASCII symbol of one cell."""
        if p in self.walls:
            return WALL
        on_target = p in self.targets
        if p == self.player:
            return PLAYER_ON_TARGET if on_target else PLAYER
        if p in self.boxes:
            return BOX_ON_TARGET if on_target else BOX
        return TARGET if on_target else FLOOR

    def rows(self) -> list[str]:
        return ["".join(self.tile((r, c)) for c in range(self.width)) for r in range(self.height)]

    def to_text(self) -> str:
        """ASCII, one line per row: `#` wall, ` ` floor, `.` target, `$` box, `*` box on target,
        `@` player, `+` player on target."""
        return "\n".join(self.rows())

    @classmethod
    def from_text(cls, text: str, solution: Sequence[str] | None = None) -> "Level":
        """Parse `to_text` output (short lines are padded with floor; `-` and `_` also mean floor)."""
        lines = text.split("\n")
        while lines and not lines[-1].strip():
            lines.pop()
        if not lines:
            raise ValueError("empty level text")
        width = max(len(line) for line in lines)
        walls, targets, boxes, players = set(), set(), set(), []
        for r, line in enumerate(lines):
            for c, ch in enumerate(line.ljust(width)):
                p = (r, c)
                if ch == WALL:
                    walls.add(p)
                elif ch in (TARGET, BOX_ON_TARGET, PLAYER_ON_TARGET):
                    targets.add(p)
                elif ch not in _FLOOR_ALIASES and ch not in (BOX, PLAYER):
                    raise ValueError(f"unknown symbol {ch!r} at row {r}, column {c}")
                if ch in (BOX, BOX_ON_TARGET):
                    boxes.add(p)
                if ch in (PLAYER, PLAYER_ON_TARGET):
                    players.append(p)
        if len(players) != 1:
            raise ValueError(f"need exactly one player, found {len(players)}")
        return cls(width, len(lines), walls, targets, boxes, players[0],
                   tuple(solution) if solution is not None else None)

    def to_dict(self) -> dict:
        """JSON-serialisable: {"rows": [...], "solution": [...] | None, "optimal_len": int | None}."""
        return {"rows": self.rows(),
                "solution": list(self.solution) if self.solution is not None else None,
                "optimal_len": len(self.solution) if self.solution is not None else None}

    @classmethod
    def from_dict(cls, d: dict) -> "Level":
        if "rows" not in d:
            raise ValueError("level dict needs 'rows'")
        rows = d["rows"]
        width = max(len(r) for r in rows) if rows else 0
        # Pad explicitly: a row of trailing floor must keep its width.
        return cls.from_text("\n".join(r.ljust(width) for r in rows), d.get("solution"))

    def __str__(self) -> str:
        return self.to_text()


# ---------------------------------------------------------------------------------------------- simulator

class SokobanEnv:
    """gym-sokoban's dynamics and rewards on a `Level`.

    step(action) -> (reward, done). A step always costs STEP_PENALTY, even when the player walks into a wall or
    pushes a box into a wall or another box (then nothing moves). Pushing a box onto a target adds
    BOX_ON_TARGET_REWARD, off a target BOX_OFF_TARGET_PENALTY (counted as the change in the number of boxes on
    targets, as gym-sokoban does), and FINISHED_REWARD when every box is on a target. done: all boxes on targets,
    or max_steps steps taken. Boxes already on targets at reset count as placed (no reward until one moves; pushing
    one off costs 1, pushing it back earns 1), where gym-sokoban's reset starts the count at 0.
    """

    def __init__(self, level: Level | dict, max_steps: int = 120):
        self.level = level if isinstance(level, Level) else Level.from_dict(level)
        self.max_steps = max_steps
        self.reset()

    def reset(self) -> Level:
        self.player = self.level.player
        self.boxes = set(self.level.boxes)
        self.num_steps = 0
        self.boxes_on_target = len(self.boxes & self.level.targets)
        return self.state

    @property
    def state(self) -> Level:
        return self.level.with_state(self.player, self.boxes)

    @property
    def solved(self) -> bool:
        return self.boxes_on_target == len(self.level.targets)

    def step(self, action: str) -> tuple[float, bool]:
        if action not in DELTAS:
            raise ValueError(f"unknown action {action!r}; expected one of {ACTIONS}")
        self.num_steps += 1
        dr, dc = DELTAS[action]
        nxt = (self.player[0] + dr, self.player[1] + dc)
        if nxt in self.boxes:
            beyond = (nxt[0] + dr, nxt[1] + dc)
            if self.level.is_free(beyond) and beyond not in self.boxes:
                self.boxes.remove(nxt)
                self.boxes.add(beyond)
                self.player = nxt
        elif self.level.is_free(nxt):
            self.player = nxt
        # Same order of float additions as gym-sokoban's _calc_reward.
        reward = STEP_PENALTY
        on_target = len(self.boxes & self.level.targets)
        if on_target > self.boxes_on_target:
            reward += BOX_ON_TARGET_REWARD
        elif on_target < self.boxes_on_target:
            reward += BOX_OFF_TARGET_PENALTY
        self.boxes_on_target = on_target
        if self.solved:
            reward += FINISHED_REWARD
        return reward, self.solved or self.num_steps >= self.max_steps


# ---------------------------------------------------------------------------------------------- solver

def _grid(level: Level):
    """Flat cells over the grid padded by one wall cell: (open flags, index of a (row, col), size, row stride)."""
    stride = level.width + 2
    size = (level.height + 2) * stride
    open_ = [False] * size
    for r in range(level.height):
        for c in range(level.width):
            if (r, c) not in level.walls:
                open_[(r + 1) * stride + c + 1] = True
    return open_, (lambda p: (p[0] + 1) * stride + p[1] + 1), size, stride


def _live_cells(open_: list[bool], targets: list[int], offsets: list[int]) -> list[bool]:
    """Cells from which a lone box can still reach some target (pulling back from the targets).
    A box anywhere else is dead: it can never be placed (this covers the non-target corners)."""
    live = [False] * len(open_)
    todo = deque(targets)
    for t in targets:
        live[t] = True
    while todo:
        b = todo.popleft()
        for d in offsets:
            prev, player = b - d, b - 2 * d  # the box came from prev, pushed by a player standing at player
            if open_[prev] and open_[player] and not live[prev]:
                live[prev] = True
                todo.append(prev)
    return live


def solve(level: Level, max_states: int = 1_000_000, max_depth: int | None = None) -> list[str] | None:
    """A shortest plan in MOVES (each action counts once, walking or pushing), as action strings.

    Plain BFS over (player, boxes) states; a state is pruned when a box sits on a dead cell (no target reachable
    by pushing it alone) or in a frozen 2x2 block of walls and boxes that is not all on targets; both prunings are
    exact, so optimality is kept. Returns [] for an already solved level, None when the level is unsolvable,
    when more than `max_states` states would be stored, or when no plan of at most `max_depth` moves exists.
    """
    open_, idx, size, stride = _grid(level)
    offsets = [-stride, stride, -1, 1]  # same order as ACTIONS
    targets = [idx(t) for t in level.targets]
    target_mask = sum(1 << t for t in targets)
    box_mask = sum(1 << idx(b) for b in level.boxes)
    if box_mask == target_mask:
        return []
    live = _live_cells(open_, targets, offsets)
    if not all(live[idx(b)] for b in level.boxes):
        return None

    def frozen(mask: int, b: int) -> bool:
        # Any 2x2 block holding b made only of walls and boxes, with a box off target, can never move again.
        for dr in (-stride, stride):
            for dc in (-1, 1):
                block = (b, b + dr, b + dc, b + dr + dc)
                if all(not open_[x] or (mask >> x) & 1 for x in block) and \
                        any((mask >> x) & 1 and not (target_mask >> x) & 1 for x in block):
                    return True
        return False

    start = box_mask * size + idx(level.player)
    parent: dict[int, tuple[int, int]] = {start: (-1, -1)}
    frontier = [start]
    depth = 0
    while frontier:
        depth += 1
        if max_depth is not None and depth > max_depth:
            return None
        nxt_frontier = []
        for key in frontier:
            mask, p = divmod(key, size)
            for a, d in enumerate(offsets):
                q = p + d
                if not open_[q]:
                    continue
                new_mask = mask
                if (mask >> q) & 1:
                    b = q + d
                    if not open_[b] or (mask >> b) & 1 or not live[b]:
                        continue
                    new_mask = mask ^ (1 << q) ^ (1 << b)
                    if new_mask != target_mask and frozen(new_mask, b):
                        continue
                new_key = new_mask * size + q
                if new_key in parent:
                    continue
                parent[new_key] = (key, a)
                if new_mask == target_mask:
                    plan = []
                    while new_key != start:
                        new_key, a = parent[new_key]
                        plan.append(ACTIONS[a])
                    return plan[::-1]
                if len(parent) > max_states:
                    return None
                nxt_frontier.append(new_key)
        frontier = nxt_frontier
    return None


# ---------------------------------------------------------------------------------------------- generator

# gym-sokoban's room_topology_generation masks: each step of the walk carves one of these 3x3 stamps.
_MASKS = (
    ((0, 0, 0), (1, 1, 1), (0, 0, 0)),
    ((0, 1, 0), (0, 1, 0), (0, 1, 0)),
    ((0, 0, 0), (1, 1, 0), (0, 1, 0)),
    ((0, 0, 0), (1, 1, 0), (1, 1, 0)),
    ((0, 0, 0), (0, 1, 1), (0, 1, 0)),
)
_DIRS = ((1, 0), (0, 1), (-1, 0), (0, -1))


def _room_topology(rng: random.Random, width: int, height: int, num_steps: int,
                   p_change_direction: float = 0.35) -> list[Pos]:
    """Floor cells (sorted) carved by a random walk stamping masks, walls on the border (gym-sokoban)."""
    carved = [[0] * width for _ in range(height)]
    direction = rng.choice(_DIRS)
    r, c = rng.randint(1, height - 1), rng.randint(1, width - 1)
    for _ in range(num_steps):
        if rng.random() < p_change_direction:
            direction = rng.choice(_DIRS)
        r = max(min(r + direction[0], height - 2), 1)
        c = max(min(c + direction[1], width - 2), 1)
        mask = rng.choice(_MASKS)
        for i in range(3):
            for j in range(3):
                carved[r - 1 + i][c - 1 + j] |= mask[i][j]
    return [(i, j) for i in range(1, height - 1) for j in range(1, width - 1) if carved[i][j]]


def _reverse_play(rng: random.Random, floor: set, targets: list[Pos], player: Pos, walks: int, steps: int):
    """Pull boxes away from their targets with random player moves (each step: one of the 4 directions, pulling
    the box behind the player or not). Returns (score, player, boxes) of the best configuration seen, with
    gym-sokoban's room score = box swaps x sum of Manhattan distances of boxes from their own targets, and 0 when
    any target is covered (by a box or the player). Each walk restarts from the solved position."""
    target_set = set(targets)
    best = (0, player, tuple(targets))
    for _ in range(walks):
        p, boxes = player, list(targets)
        where = {b: i for i, b in enumerate(boxes)}  # cell -> box index
        swaps, last = 0, -1
        for _ in range(steps):
            a = rng.randrange(8)
            dr, dc = _DIRS[a % 4]
            q = (p[0] + dr, p[1] + dc)
            if q not in floor or q in where:
                continue  # gym-sokoban: the player only steps onto an empty floor or target cell
            if a < 4:  # pull
                behind = (p[0] - dr, p[1] - dc)
                i = where.pop(behind, None)
                if i is not None:
                    boxes[i] = p
                    where[p] = i
                    if i != last:
                        swaps, last = swaps + 1, i
            p = q
            if p in target_set or target_set & where.keys():
                continue
            score = swaps * sum(abs(b[0] - t[0]) + abs(b[1] - t[1]) for b, t in zip(boxes, targets))
            if score > best[0]:
                best = (score, p, tuple(boxes))
    return best


def generate_level(seed: int, width: int = 8, height: int = 8, num_boxes: int = 2, *,
                   max_states: int = 200_000, max_solution_len: int | None = None, max_attempts: int = 100,
                   walks: int = 32, walk_steps: int | None = None, topology_steps: int | None = None) -> Level:
    """A solvable level, deterministic per (seed, arguments), with its optimal plan in `level.solution`.

    Room sizes include the wall border (gym-sokoban: 6x6 .. 10x10 rooms, 1 to 3 boxes). Each attempt: carve the
    room (random walk of `topology_steps`, default int(1.7 * (width + height)) as in gym-sokoban), place the player
    and the targets on random floor cells, reverse-play `walks` random walks of `walk_steps` (default
    10 * (width + height)) steps and keep the best-scoring configuration. An attempt is rejected (next attempt, same
    random stream) when no configuration scores above 0 (no box left its target), when a box or the player starts
    on a target, when the solver gives up (`max_states`) or when the optimal plan is empty or longer than
    `max_solution_len`. So every level starts with all targets uncovered, as gym-sokoban's do (its reverse play
    scores 0 while a target is covered, and so does `_reverse_play`; the explicit check keeps the guarantee): the
    released LMM-R1 verifier loses a target that starts covered (rewards/sokoban.py), and on such levels its
    rewards would differ from ours.
    """
    if not (3 <= width and 3 <= height) or num_boxes < 1:
        raise ValueError("need width, height >= 3 and num_boxes >= 1")
    rng = random.Random(seed)
    topology_steps = topology_steps if topology_steps is not None else int(1.7 * (width + height))
    walk_steps = walk_steps if walk_steps is not None else 10 * (width + height)
    for _ in range(max_attempts):
        floor_cells = _room_topology(rng, width, height, topology_steps)
        if len(floor_cells) <= num_boxes + 1:
            continue
        picks = rng.sample(floor_cells, num_boxes + 1)
        player, targets = picks[0], sorted(picks[1:])
        score, player, boxes = _reverse_play(rng, set(floor_cells), targets, player, walks, walk_steps)
        if score <= 0 or player in targets or set(boxes) & set(targets):
            continue  # nothing displaced, or a target starts covered (the released verifier would lose it)
        walls = {(r, c) for r in range(height) for c in range(width)} - set(floor_cells)
        level = Level(width, height, walls, targets, boxes, player)
        plan = solve(level, max_states=max_states, max_depth=max_solution_len)
        if not plan:
            continue
        return Level(width, height, walls, targets, boxes, player, tuple(plan))
    raise RuntimeError(f"no level after {max_attempts} attempts (seed {seed}, {width}x{height}, {num_boxes} boxes)")


def generate_levels(n: int, seed: int = 0, sizes: Sequence = tuple(range(6, 11)), boxes: Sequence[int] = (1, 2, 3),
                    max_solution_len: int | None = None, **level_options) -> list[Level]:
    """n levels; each draws a size (an int for a square room, or (width, height)) and a box count uniformly, and
    its own seed, from random.Random(seed). Deterministic per arguments. A (size, boxes) draw that yields no level
    within generate_level's attempts is replaced by a fresh draw."""
    rng = random.Random(seed)
    out: list[Level] = []
    failures = 0
    while len(out) < n:
        size = rng.choice(list(sizes))
        width, height = (size, size) if isinstance(size, int) else size
        k = rng.choice(list(boxes))
        level_seed = rng.getrandbits(32)
        try:
            out.append(generate_level(level_seed, width, height, k, max_solution_len=max_solution_len,
                                      **level_options))
        except RuntimeError:
            failures += 1
            if failures > 10 * n + 10:
                raise
    return out


# ---------------------------------------------------------------------------------------------- renderer

TILE_NAMES = ("wall", "floor", "target", "box", "box_on_target", "player", "player_on_target")
_SYMBOL_TO_TILE = {WALL: "wall", FLOOR: "floor", TARGET: "target", BOX: "box", BOX_ON_TARGET: "box_on_target",
                   PLAYER: "player", PLAYER_ON_TARGET: "player_on_target"}
TILE_COLORS = {  # the dominant colour of each sprite
    "wall": (72, 72, 84),        # dark slate bricks with light mortar lines
    "floor": (228, 218, 190),    # light sand
    "target": (220, 40, 40),     # red ring on sand
    "box": (168, 104, 40),       # brown crate with a dark X
    "box_on_target": (40, 170, 70),  # green crate with a dark X
    "player": (40, 90, 225),     # blue disc on sand
    "player_on_target": (40, 90, 225),  # blue disc inside the red ring
}
_MORTAR = (150, 150, 160)
_DARK = (60, 40, 20)


@lru_cache(maxsize=8)
def _sprites(tile: int) -> dict[str, np.ndarray]:
    """One RGB array (tile x tile x 3) per tile kind, drawn with PIL primitives (deterministic)."""
    t = tile
    w = max(1, t // 8)  # line width

    def base(color=TILE_COLORS["floor"]):
        return Image.new("RGB", (t, t), color)

    def ring(draw):
        m = max(1, t // 10)
        draw.ellipse((m, m, t - 1 - m, t - 1 - m), outline=TILE_COLORS["target"], width=max(2, t // 7))

    def crate(draw, color):
        m = max(1, t // 10)
        draw.rectangle((m, m, t - 1 - m, t - 1 - m), fill=color, outline=_DARK, width=w)
        draw.line((m, m, t - 1 - m, t - 1 - m), fill=_DARK, width=w)
        draw.line((m, t - 1 - m, t - 1 - m, m), fill=_DARK, width=w)

    def disc(draw, margin):
        draw.ellipse((margin, margin, t - 1 - margin, t - 1 - margin), fill=TILE_COLORS["player"])

    out = {}
    img = base(TILE_COLORS["wall"])
    d = ImageDraw.Draw(img)
    half = t // 2
    d.line((0, 0, t - 1, 0), fill=_MORTAR, width=1)
    d.line((0, half, t - 1, half), fill=_MORTAR, width=1)
    d.line((half, 0, half, half), fill=_MORTAR, width=1)
    d.line((0, half, 0, t - 1), fill=_MORTAR, width=1)
    out["wall"] = img
    out["floor"] = base()
    img = base(); ring(ImageDraw.Draw(img)); out["target"] = img
    img = base(); crate(ImageDraw.Draw(img), TILE_COLORS["box"]); out["box"] = img
    img = base(); crate(ImageDraw.Draw(img), TILE_COLORS["box_on_target"]); out["box_on_target"] = img
    img = base(); disc(ImageDraw.Draw(img), max(2, t // 6)); out["player"] = img
    img = base(); d = ImageDraw.Draw(img); ring(d); disc(d, max(4, t * 3 // 10)); out["player_on_target"] = img
    return {k: np.asarray(v, dtype=np.uint8) for k, v in out.items()}


def render(level_or_state: "Level | SokobanEnv | dict", tile: int = 16) -> Image.Image:
    """RGB image of a level (or of a SokobanEnv's current state, or a level dict), `tile` pixels per cell.
    Deterministic: the same position gives identical pixels."""
    if isinstance(level_or_state, SokobanEnv):
        level = level_or_state.state
    elif isinstance(level_or_state, dict):
        level = Level.from_dict(level_or_state)
    else:
        level = level_or_state
    if tile < 4:
        raise ValueError("tile must be at least 4 pixels")
    sprites = _sprites(tile)
    canvas = np.empty((level.height * tile, level.width * tile, 3), dtype=np.uint8)
    for r, row in enumerate(level.rows()):
        for c, ch in enumerate(row):
            canvas[r * tile:(r + 1) * tile, c * tile:(c + 1) * tile] = sprites[_SYMBOL_TO_TILE[ch]]
    return Image.fromarray(canvas, "RGB")


# ---------------------------------------------------------------------------------------------- prompt

PROMPT = (
    "You are playing Sokoban. The image shows the puzzle as a grid of square tiles:\n"
    "- wall: dark grey bricks (you cannot walk through walls)\n"
    "- floor: plain light sand\n"
    "- target: a red ring on the floor\n"
    "- box: a brown crate marked with an X\n"
    "- box on a target: a green crate marked with an X\n"
    "- you (the player): a blue disc; a blue disc inside a red ring means you stand on a target\n"
    "Each action moves you one tile: up, down, left or right. Walking into a box pushes it one tile the same way "
    "if the tile behind it is floor or a target. You cannot pull boxes, push two boxes at once, or push a box into "
    "a wall. Goal: push every box onto a target.\n"
    "Think step by step inside <think> </think>, then give your whole plan as a comma-separated list of actions "
    "inside <answer> </answer>, for example: <think> ... </think><answer>up, left, left, down</answer>"
)
