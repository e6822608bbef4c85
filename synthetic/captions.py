"""Captions in HumanML3D's style: paraphrases of a 1- or 2-part motion that name its
parameters (speed, steps, direction, hand or leg, height, repetitions).

An action's verb-phrase options are data, in PHRASES: one option a line, its clauses joined
by ' + ' (they are said with 'and'), each clause its verb lemma and the rest. A template's
`{slot}`s are filled left to right from the action's parameters; a slot that is a choice (an
adverb from a pool, 'twice' or 'two times') is drawn anew at each use, so the options draw
from rng in the order they are written. `{poss}` and `{refl}` stay for the subject's
possessive and reflexive pronouns.
"""
from __future__ import annotations

import re
from typing import Callable, Optional

import numpy as np

from .curves import pick
from .lexicon import NUMBER_WORDS, VERB_FORMS, count_phrase

# ---------------------------------------------------------------------------------------
# Verb-phrase templates of each action (and variant)
# ---------------------------------------------------------------------------------------
PHRASES = {
    "walk": """
        walk forward {adv} for {steps}
        walk {adv} forward {steps}
        take {adj_steps} forward
        walk straight ahead {adv} for {steps}
        walk {steps} forward {adv}
        walk forward {adv}""",
    "walk_turning": """
        walk forward {adv} {steps} + turn {turn}
        walk {adv} {steps} in a curve to the {d}
        take {adj_steps} forward while turning {turn}
        walk forward {steps} + veer {slightly}to the {d}
        take {steps} {adv} forward + turn {d} while walking""",
    "jog": """
        jog forward {adv} {steps}
        jog {adv} {steps} forward
        jog straight ahead {adv}
        run forward at a {pace} jogging pace for {steps}
        jog forward for {steps}""",
    "run": """
        run forward {adv} for {steps}
        run {steps} forward {adv}
        run straight ahead {adv}
        dash forward {steps} {adv}""",
    "sprint": """
        sprint forward {steps}""",  # added to "run" when fast
    "walk_backward": """
        walk backward {adv}
        walk backwards {steps} {adv}
        take {adj_steps} backward
        back up {adv} {steps}
        move backwards {adv} for {steps}""",
    "sidestep": """
        sidestep to the {d} {times} {adv}
        step sideways to the {d} {times}
        take {side_steps} to the {d} {adv}
        shuffle {adv} to the {d} {times}
        move sideways to the {d} {adv}""",
    "turn_90": """
        turn {adv} to the {d}
        turn {d} {adv}
        make a quarter turn to the {d}
        rotate ninety degrees to the {d} {adv}
        turn in place to the {d}""",
    "turn_180": """
        turn around to the {d} {adv}
        turn {adv} around to the {d}
        do a half turn to the {d}
        turn around in place to the {d}
        rotate one hundred eighty degrees to the {d}""",
    "spin": """
        spin around {times_or_once} to the {d} {adv}
        spin {adv} in {circles} to the {d}
        do {spins} to the {d}
        twirl around {times_or_once} to the {d}
        turn around in {circles} to the {d} {adv}""",
    "jump": """
        jump {adv} in place {times}
        jump up and down {times} {adv}
        do {jumps} in place
        leap {adv} into the air {times}
        jump straight up {adv} {times}""",
    "jump_forward": """
        jump forward {adv} {times}
        leap forward {adv} {times}
        do {jumps} forward
        jump ahead {adv} with both feet {times}""",
    "hop": """
        hop {fw}on {poss} {leg} leg {times}
        hop {times} {fw}on the {leg} foot
        balance on {poss} {leg} leg + hop {fw}{times}
        do {hops} {fw}on {poss} {leg} leg
        lift {poss} {other} foot + hop {fw}on the {leg} one {times}""",
    "squat": """
        squat {adv} {times} {spd}
        do {squats} {spd}
        bend {poss} knees + squat {adv} {times}
        crouch {adv} {times} {spd}
        squat {spd} {adv} {times}""",
    "sit_down_and_up": """
        sit down {spd} + stand back up
        take a seat {spd} + get up again
        sit down for a moment + stand up again
        lower {refl} {spd} into a sitting position + rise again
        sit down {spd} as if on a chair + stand up""",
    "sit_down": """
        sit down {spd}
        take a seat {spd}
        lower {refl} {spd} into a sitting position
        sit down {spd} as if on a chair
        bend {poss} knees + sit down {spd}""",
    "bow": """
        bow {adv} {times}
        take {bows}
        bend forward at the waist {adv} {times}
        bow down {adv} {times}
        do {bows}""",
    "kick": """
        kick {h} with {poss} {leg} leg {times}
        kick {h} with the {leg} foot {times}
        do {kicks} with the {leg} leg
        perform {front_kicks} with {poss} {leg} leg
        kick {poss} {leg} leg forward {h} {times}""",
    "punch_both": """
        punch {spd} with both fists {times}, alternating hands
        throw {punches} {spd}, alternating left and right
        punch forward {times} with both hands in turn
        box {spd}, throwing {punches} with the left and right hand""",
    "punch": """
        punch {spd} with {poss} {hand} hand {times}
        throw {punches} with the {hand} fist {spd}
        punch forward with the {hand} arm {times}
        strike forward {times} with {poss} {hand} fist {spd}""",
    "wave_both": """
        wave both hands above {poss} head {spd} {times}
        wave with both hands {times}
        raise both arms + wave {spd} {times}
        wave both hands in the air {spd}""",
    "wave": """
        wave {poss} {hand} hand {spd} {times}
        wave with the {hand} hand {times}
        raise {poss} {hand} hand + wave {spd} {times}
        wave hello with {poss} {hand} hand {spd}
        wave {poss} {hand} arm above {poss} head {times}""",
    "clap": """
        clap {poss} hands {times} {spd}
        clap {spd} {times}
        clap {times} in front of {poss} chest
        clap {poss} hands together {spd} {times}""",
}
# Raising the arms: a raise clause, then (mostly) one of the clauses after it.
RAISE_WHERE = {"up": ["above {poss} head", "up over {poss} head", "straight up"],
               "front": ["forward", "in front of {poss} body", "forward to shoulder height"],
               "side": ["out to the side{s}", "sideways", "to shoulder height at the side"]}
RAISE_AFTER = {"short": [("lower", "{it} again"), ("put", "{it} back down")],
               "long": [("hold", "{it} there for a while"), ("keep", "{it} raised for a moment")]}
RAISE_VERBS = [("raise", True), ("lift", True), ("raise", False), ("stretch", True)]  # (verb, with an after clause)

# Adverb pools (one drawn at each use) and fixed words, by parameter value.
GAIT_ADVERBS = {"slow": ["slowly", "at a slow pace", "slowly"], "normal": ["", "steadily", ""],
                "fast": ["quickly", "briskly", "fast", "at a fast pace"]}
JOG_ADVERBS = {"slow": ["slowly", "lightly", "at a slow pace"], "normal": ["", "steadily", "at a steady pace"]}
RUN_ADVERBS = {"normal": ["", "", "at a steady pace"], "fast": ["very fast", "at full speed", "quickly", "fast"]}
STEP_ADJECTIVE = {"slow": "slow ", "normal": "", "fast": "quick "}
SPEED_ADVERB = {"slow": "slowly", "normal": "", "fast": "quickly"}
JUMP_ADVERBS = {"low": ["a little", "slightly", "low"], "normal": [""], "high": ["high", "really high"]}
JUMP_ADJECTIVE = {"low": "small ", "normal": "", "high": "high "}
DISTANCE_ADVERBS = {"short": ["a short distance", "a little"], "normal": ["", ""], "far": ["far", "a long way"]}
DISTANCE_ADJECTIVE = {"short": "small ", "normal": "", "far": "long "}
SQUAT_ADVERBS = {"half": ["halfway down", "slightly"], "deep": ["deeply", "all the way down", "low"]}
SQUAT_ADJECTIVES = {"half": ["shallow ", "half "], "deep": ["deep ", "full "]}
BOW_ADVERBS = {"slight": ["slightly", "a little"], "deep": ["deeply", "low"]}
BOW_ADJECTIVES = {"slight": ["small ", "slight "], "deep": ["deep ", "low "]}
FAST_PUNCH_ADVERBS = ["quickly", "rapidly", "fast"]

_SLOT = re.compile(r"\{(\w+)\}")


# ---------------------------------------------------------------------------------------
# Filling templates
# ---------------------------------------------------------------------------------------
def fill(text: str, slots: dict) -> str:
    """Replace each `{name}` of text by slots[name], left to right: a string, or a callable
    called at each use (a random choice). Names without a slot stay as they are."""
    def value(match: re.Match) -> str:
        name = match.group(1)
        if name not in slots:
            return match.group(0)
        slot = slots[name]
        return slot() if callable(slot) else slot
    return _SLOT.sub(value, text)


def _parse_options(block: str) -> list:
    """The options of a PHRASES entry: [[(verb lemma, rest), ...] per line]."""
    return [[tuple(clause.strip().split(" ", 1)) for clause in line.split(" + ")]
            for line in block.strip().splitlines()]


_OPTIONS = {key: _parse_options(block) for key, block in PHRASES.items()}


def _fill_options(key: str, slots: dict) -> list:
    """The options of PHRASES[key] with their slots filled, in order."""
    return [[(verb, fill(text, slots)) for verb, text in option] for option in _OPTIONS[key]]


def _times(n: int, rng) -> str:
    """'once' (or nothing), 'twice' or 'two times', 'three times', ...: one draw for n <= 2."""
    if n == 1:
        return ["once", ""][int(rng.integers(2))]
    if n == 2:
        return ["twice", "two times"][int(rng.integers(2))]
    return f"{NUMBER_WORDS[n]} times"


def _draws(rng, pool: list) -> Callable[[], str]:
    """A slot drawing one element of pool at each use."""
    return lambda: pick(rng, pool)


def _times_slot(n: int, rng) -> Callable[[], str]:
    return lambda: _times(n, rng)


# ---------------------------------------------------------------------------------------
# Each action's options
# ---------------------------------------------------------------------------------------
def _gait_phrases(action: str, p: dict, rng) -> list:
    n, speed = p["steps"], p["speed"]
    slots = {"adv": _draws(rng, GAIT_ADVERBS[speed]), "steps": count_phrase(n, "step"),
             "adj_steps": count_phrase(n, STEP_ADJECTIVE[speed] + "step")}
    if action == "walk":
        options = _fill_options("walk", slots)
        if p["turn"] == "none":
            return options
        d, slight = p["turn"], p["turn_angle"] < 60  # the straight options above drew from rng all the same
        slots.update(d=d, turn=f"slightly to the {d}" if slight else f"to the {d}",
                     slightly="slightly " if slight else "")
        return _fill_options("walk_turning", slots)
    if action == "jog":
        slots.update(adv=_draws(rng, JOG_ADVERBS[speed]), pace="slow" if speed == "slow" else "steady")
        return _fill_options("jog", slots)
    if action == "run":
        slots["adv"] = _draws(rng, RUN_ADVERBS[speed])
        options = _fill_options("run", slots)
        return options + _fill_options("sprint", slots) if speed == "fast" else options
    return _fill_options("walk_backward", slots)


def _sidestep_phrases(action: str, p: dict, rng) -> list:
    n = p["steps"]
    return _fill_options("sidestep", {"d": p["direction"], "adv": SPEED_ADVERB[p["speed"]],
                                      "times": _times_slot(n, rng), "side_steps": count_phrase(n, "side step")})


def _turn_phrases(action: str, p: dict, rng) -> list:
    slots = {"d": p["direction"], "adv": SPEED_ADVERB[p["speed"]]}
    if action == "turn":
        return _fill_options("turn_90" if p["angle"] == 90 else "turn_180", slots)
    k = p["turns"]
    slots.update(times_or_once=lambda: _times(k, rng) or "once",
                 circles="a full circle" if k == 1 else "two full circles",
                 spins="a full spin" if k == 1 else "two full spins")
    return _fill_options("spin", slots)


def _jump_phrases(action: str, p: dict, rng) -> list:
    n = p["reps"]
    if action == "jump":
        adverbs, adjective = JUMP_ADVERBS[p["height"]], JUMP_ADJECTIVE[p["height"]]
    else:
        adverbs, adjective = DISTANCE_ADVERBS[p["distance"]], DISTANCE_ADJECTIVE[p["distance"]]
    return _fill_options(action, {"adv": _draws(rng, adverbs), "times": _times_slot(n, rng),
                                  "jumps": count_phrase(n, adjective + "jump")})


def _hop_phrases(action: str, p: dict, rng) -> list:
    leg, n = p["leg"], p["reps"]
    forward = "forward " if p["forward"] else pick(rng, ["", "in place "])
    return _fill_options("hop", {"leg": leg, "other": "right" if leg == "left" else "left", "fw": forward,
                                 "times": _times_slot(n, rng), "hops": count_phrase(n, "hop")})


def _dip_phrases(action: str, p: dict, rng) -> list:
    """Squats and bows: an adverb and an adjective of depth."""
    n = p["reps"]
    adverbs, adjectives = (SQUAT_ADVERBS, SQUAT_ADJECTIVES) if action == "squat" else (BOW_ADVERBS, BOW_ADJECTIVES)
    adjective = _draws(rng, adjectives[p["depth"]])
    return _fill_options(action, {"adv": _draws(rng, adverbs[p["depth"]]), "times": _times_slot(n, rng),
                                  "spd": "slowly" if p.get("speed") == "slow" else "",
                                  action + "s": lambda: count_phrase(n, adjective() + action)})


def _sit_phrases(action: str, p: dict, rng) -> list:
    return _fill_options("sit_down_and_up" if p["stand_up"] else "sit_down",
                         {"spd": "slowly" if p["speed"] == "slow" else ""})


def _kick_phrases(action: str, p: dict, rng) -> list:
    n, h = p["reps"], p["height"]
    return _fill_options("kick", {"leg": p["leg"], "h": h, "times": _times_slot(n, rng),
                                  "kicks": count_phrase(n, h + " kick"),
                                  "front_kicks": count_phrase(n, h + " front kick")})


def _punch_phrases(action: str, p: dict, rng) -> list:
    n, hand = p["reps"], p["hand"]
    fast = pick(rng, FAST_PUNCH_ADVERBS)  # drawn whatever the speed
    slots = {"hand": hand, "spd": {"normal": "", "fast": fast}[p["speed"]], "times": _times_slot(n, rng),
             "punches": count_phrase(n, "punch")}
    return _fill_options("punch_both" if hand == "both" else "punch", slots)


def _wave_phrases(action: str, p: dict, rng) -> list:
    hand = p["hand"]
    slots = {"hand": hand, "spd": SPEED_ADVERB[p["speed"]], "times": _times_slot(p["reps"], rng)}
    return _fill_options("wave_both" if hand == "both" else "wave", slots)


def _raise_phrases(action: str, p: dict, rng) -> list:
    arms = p["arms"]
    both = arms == "both"
    arm = pick(rng, ["both arms", "{poss} arms"] if both else [f"{{poss}} {arms} arm", f"the {arms} arm"])
    where = [fill(w, {"s": "s" if both else ""}) for w in RAISE_WHERE[p["direction"]]]
    after = [(verb, fill(text, {"it": "them" if both else "it"})) for verb, text in RAISE_AFTER[p["hold"]]]
    options = []
    for verb, with_after in RAISE_VERBS:
        option = [(verb, f"{arm} {pick(rng, where)}")]
        options.append(option + [pick(rng, after)] if with_after else option)
    return options


def _clap_phrases(action: str, p: dict, rng) -> list:
    return _fill_options("clap", {"spd": SPEED_ADVERB[p["speed"]], "times": _times_slot(p["reps"], rng)})


_PHRASE_BUILDERS = {
    "walk": _gait_phrases, "jog": _gait_phrases, "run": _gait_phrases, "walk_backward": _gait_phrases,
    "sidestep": _sidestep_phrases, "turn": _turn_phrases, "spin": _turn_phrases,
    "jump": _jump_phrases, "jump_forward": _jump_phrases, "hop": _hop_phrases,
    "squat": _dip_phrases, "sit_down": _sit_phrases, "bow": _dip_phrases, "kick": _kick_phrases,
    "punch": _punch_phrases, "wave": _wave_phrases, "raise_arms": _raise_phrases, "clap": _clap_phrases,
}


def action_phrases(action: str, p: dict, rng) -> list:
    """Verb-phrase options for one action: each a list of (verb lemma, rest) clauses joined by
    'and'. `{poss}`/`{refl}` stand for the subject's possessive and reflexive pronouns."""
    return _PHRASE_BUILDERS[action](action, p, rng)


# ---------------------------------------------------------------------------------------
# Sentences
# ---------------------------------------------------------------------------------------
_SUBJECTS = [("a person", ("his", "himself"), ("their", "themselves")), ("a man", ("his", "himself")),
             ("a woman", ("her", "herself")), ("someone", ("their", "themselves"), ("his", "himself")),
             ("the person", ("his", "himself"), ("their", "themselves")), ("a human", ("his", "himself")),
             ("the man", ("his", "himself")), ("the woman", ("her", "herself"))]
# Sentence forms of one part and of two parts: {who}, {third0}/{third1} (third person singular),
# {gerund0}/{gerund1}.
_ONE_PART_FORMS = ["{who} {third0}", "{who} {third0}", "{who} is {gerund0}"]
_TWO_PART_FORMS = ["{who} {third0} and then {third1}", "{who} {third0}, then {third1}",
                   "{who} first {third0}, and then {third1}", "{who} {third0} before {gerund1}",
                   "after {gerund0}, {who} {third1}", "{who} {third0} and afterwards {third1}"]


def _clean(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    return re.sub(r"\s+,", ",", text)


def _verb_phrase(clauses, form: int, poss: str, refl: str) -> str:
    """Join clauses with 'and'; form 0: third person singular, 1: gerund."""
    parts = [f"{VERB_FORMS[verb][form]} {rest}" for verb, rest in clauses]
    return _clean(" and ".join(parts).replace("{poss}", poss).replace("{refl}", refl))


def _sentence(parts: list, rng: np.random.Generator) -> str:
    """One random caption of the motion `parts`."""
    subject = _SUBJECTS[int(rng.integers(len(_SUBJECTS)))]
    poss, refl = subject[1 + int(rng.integers(len(subject) - 1))]
    phrases = [pick(rng, action_phrases(action, params, rng)) for action, params in parts]
    slots = {"who": subject[0]}
    for i, clauses in enumerate(phrases):
        slots[f"third{i}"] = _verb_phrase(clauses, 0, poss, refl)
        slots[f"gerund{i}"] = _verb_phrase(clauses, 1, poss, refl)
    form = pick(rng, _ONE_PART_FORMS if len(parts) == 1 else _TWO_PART_FORMS)
    sentence = _clean(fill(form, slots)).rstrip(",") + "."
    return sentence.replace(" .", ".").replace(",.", ".")


def make_captions(parts: list, rng: np.random.Generator, count: Optional[int] = None) -> list:
    """3 to 5 distinct paraphrased captions (lowercase, HumanML3D style) of a 1- or 2-part motion."""
    count = int(rng.integers(3, 6)) if count is None else count
    captions: list = []
    for _ in range(60):
        if len(captions) >= count:
            break
        sentence = _sentence(parts, rng)
        if sentence not in captions:
            captions.append(sentence)
    return captions
