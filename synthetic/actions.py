"""The action table: for each of the 18 actions its parameters and their allowed values, how
to sample them, the animator that writes it into a timeline, and whether it moves the feet.

ACTIONS fixes the order in which motion programs draw actions (sample_parts), so it is part
of what makes a data set a pure function of its seed.
"""
from __future__ import annotations

from functools import partial
from typing import Callable, NamedTuple

import numpy as np

from . import actions_gestures as gestures
from . import actions_locomotion as locomotion
from .curves import pick

_SIDES = ("left", "right")


class _Draw:
    """Random draws for parameter samplers; `short` prefers fewer repetitions/steps."""

    def __init__(self, rng: np.random.Generator, short: bool):
        self.rng, self.short = rng, short

    def pick(self, options):
        return pick(self.rng, options)

    def count(self, lo: int, hi: int) -> int:
        """A count in lo..hi, or in lo..hi-1 (but at least lo) when short."""
        return int(self.rng.integers(lo, (hi if not self.short else max(lo, hi - 1)) + 1))

    def chance(self, probability: float) -> bool:
        return bool(self.rng.random() < probability)


def _sample_walk(d: _Draw, side: str) -> dict:
    """A walk's parameters; whether it turns is drawn first."""
    turn = d.pick(["none", "none", "left", "right"])
    speed = d.pick(["slow", "normal", "normal", "fast"])
    steps = d.count(6, 12) if not d.short else d.count(4, 7)  # a walk fills most of its motion
    return dict(speed=speed, steps=steps, turn=turn, turn_angle=int(d.pick([45, 90])) if turn != "none" else 0)


class Action(NamedTuple):
    """One row of the action table."""
    space: dict  # parameter -> allowed values
    sample: Callable  # (draw, side) -> params; `side` is a random "left"/"right" drawn first
    animate: Callable  # (timeline, rng, params, t0) -> end frame
    moves_feet: bool  # a second action moving the feet starts only once both feet are planted


ACTION_TABLE = {
    "walk": Action(
        {"speed": ("slow", "normal", "fast"), "steps": range(2, 13), "turn": ("none", "left", "right"),
         "turn_angle": (0, 45, 90)},
        _sample_walk, partial(locomotion.animate_gait, gait_name="walk"), True),
    "jog": Action(
        {"speed": ("slow", "normal"), "steps": range(2, 13)},
        lambda d, side: dict(speed=d.pick(["slow", "normal"]), steps=d.count(8, 12) if not d.short else d.count(5, 8)),
        partial(locomotion.animate_gait, gait_name="jog"), True),
    "run": Action(
        {"speed": ("normal", "fast"), "steps": range(2, 13)},
        lambda d, side: dict(speed=d.pick(["normal", "fast"]), steps=d.count(8, 12) if not d.short else d.count(5, 8)),
        partial(locomotion.animate_gait, gait_name="run"), True),
    "walk_backward": Action(
        {"speed": ("slow", "normal"), "steps": range(2, 13)},
        lambda d, side: dict(speed=d.pick(["slow", "normal"]), steps=d.count(6, 10) if not d.short else d.count(3, 5)),
        partial(locomotion.animate_gait, gait_name="walk_backward"), True),
    "sidestep": Action(
        {"direction": _SIDES, "steps": range(1, 7), "speed": ("slow", "normal", "fast")},
        lambda d, side: dict(direction=side, steps=d.count(2, 4 if not d.short else 3),
                             speed=d.pick(["slow", "normal", "fast"])),
        locomotion.animate_sidestep, True),
    "turn": Action(
        {"direction": _SIDES, "angle": (90, 180), "speed": ("slow", "normal", "fast")},
        lambda d, side: dict(direction=side, angle=int(d.pick([90, 90, 180])),
                             speed=d.pick(["slow", "normal", "fast"])),
        locomotion.animate_turn, True),
    "spin": Action(
        {"direction": _SIDES, "turns": (1, 2), "speed": ("normal", "fast")},
        lambda d, side: dict(direction=side, turns=int(d.pick([1, 1, 2])) if not d.short else 1,
                             speed=d.pick(["normal", "fast"])),
        locomotion.animate_spin, True),
    "jump": Action(
        {"height": ("low", "normal", "high"), "reps": range(1, 5)},
        lambda d, side: dict(height=d.pick(["low", "normal", "high"]), reps=d.count(1, 3)),
        locomotion.animate_jump, True),
    "jump_forward": Action(
        {"distance": ("short", "normal", "far"), "reps": range(1, 4)},
        lambda d, side: dict(distance=d.pick(["short", "normal", "far"]), reps=d.count(1, 2)),
        locomotion.animate_jump_forward, True),
    "hop": Action(
        {"leg": _SIDES, "reps": range(1, 7), "forward": (False, True)},
        lambda d, side: dict(leg=side, reps=d.count(2, 5 if not d.short else 3), forward=d.chance(0.4)),
        locomotion.animate_hop, True),
    "squat": Action(
        {"depth": ("half", "deep"), "reps": range(1, 5), "speed": ("slow", "normal")},
        lambda d, side: dict(depth=d.pick(["half", "deep"]), reps=d.count(1, 3), speed=d.pick(["slow", "normal"])),
        gestures.animate_squat, False),
    "sit_down": Action(
        {"stand_up": (False, True), "speed": ("slow", "normal")},
        lambda d, side: dict(stand_up=d.chance(0.5), speed=d.pick(["slow", "normal"])),
        gestures.animate_sit_down, False),
    "bow": Action(
        {"depth": ("slight", "deep"), "reps": range(1, 4)},
        lambda d, side: dict(depth=d.pick(["slight", "deep"]), reps=d.count(1, 2)),
        gestures.animate_bow, False),
    "kick": Action(
        {"leg": _SIDES, "height": ("low", "high"), "reps": range(1, 5)},
        lambda d, side: dict(leg=side, height=d.pick(["low", "high"]), reps=d.count(1, 3)),
        gestures.animate_kick, True),
    "punch": Action(
        {"hand": _SIDES + ("both",), "reps": range(1, 7), "speed": ("normal", "fast")},
        lambda d, side: dict(hand=d.pick(["left", "right", "both"]), reps=d.count(1, 4),
                             speed=d.pick(["normal", "fast"])),
        gestures.animate_punch, False),
    "wave": Action(
        {"hand": _SIDES + ("both",), "reps": range(1, 7), "speed": ("slow", "normal", "fast")},
        lambda d, side: dict(hand=d.pick(["left", "right", "right", "both"]), reps=d.count(2, 5),
                             speed=d.pick(["slow", "normal", "fast"])),
        gestures.animate_wave, False),
    "raise_arms": Action(
        {"arms": _SIDES + ("both",), "direction": ("front", "side", "up"), "hold": ("short", "long")},
        lambda d, side: dict(arms=d.pick(["left", "right", "both"]), direction=d.pick(["front", "side", "up"]),
                             hold=d.pick(["short", "long"])),
        gestures.animate_raise_arms, False),
    "clap": Action(
        {"reps": range(1, 9), "speed": ("slow", "normal", "fast")},
        lambda d, side: dict(reps=d.count(2, 6), speed=d.pick(["slow", "normal", "fast"])),
        gestures.animate_clap, False),
}
ACTIONS = tuple(ACTION_TABLE)


def check_params(action: str, params: dict) -> None:
    """Raise ValueError naming the first unknown action, parameter or value."""
    if action not in ACTION_TABLE:
        raise ValueError(f"unknown action '{action}' (choose one of {', '.join(ACTIONS)})")
    space = ACTION_TABLE[action].space
    for key, value in params.items():
        if key not in space:
            raise ValueError(f"action '{action}' has no parameter '{key}' (it has {', '.join(space)})")
        if value not in space[key]:
            allowed = space[key]
            if isinstance(allowed, range):
                shown = f"{allowed.start}..{allowed.stop - 1}"
            else:
                shown = ", ".join(map(str, allowed))
            raise ValueError(f"action '{action}' parameter '{key}' must be one of {shown}, got {value!r}")


def sample_params(action: str, rng: np.random.Generator, short: bool = False) -> dict:
    """Random parameters of one action (JSON-safe); `short` prefers fewer repetitions/steps."""
    check_params(action, {})
    draw = _Draw(rng, short)
    side = draw.pick(["left", "right"])
    return ACTION_TABLE[action].sample(draw, side)


def animate(action: str, tl, rng: np.random.Generator, params: dict, t0: int) -> int:
    """Write `action` with `params` into timeline tl from frame t0 on; returns its end frame."""
    return ACTION_TABLE[action].animate(tl, rng, params, t0)
