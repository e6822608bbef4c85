"""Labels and captions of motion-capture takes.

- `take_labels`: (content, style) from a file name `<set>_<content>_<style>_<number>` (the
  Bandai Namco data sets' naming), with style synonyms across its two sets merged
  (masculinity -> masculine, old -> elderly, tired -> exhausted, children -> childish).
- `label_captions`: several natural HumanML3D-style sentences for a (content, style) pair,
  e.g. "an elderly person walks forward." and "someone waves the right hand energetically.".
- `caption_tokens`: HumanML3D's token field (`lemma/POS` words) from a small lexicon that covers
  the generated captions; other words get the tag OTHER.
- `mirror_text`: left <-> right (and clockwise <-> counterclockwise) for mirrored motions.
- `read_captions_csv`: a user's own `file,caption` captions.
"""
from __future__ import annotations

import csv
import os
import re
from typing import Optional

import numpy as np

STYLE_SYNONYMS = {"masculinity": "masculine", "old": "elderly", "tired": "exhausted", "children": "childish"}

# Content label -> verb phrases (third person). Sides were checked on the Bandai takes: 'bye' and
# 'guide' use the right hand; 'walk-left'/'walk-right' walk diagonally forward to that side.
CONTENT_PHRASES = {
    "walk": ["walks forward", "walks straight ahead", "walks forward in a straight line"],
    "run": ["runs forward", "jogs forward", "runs straight ahead"],
    "dash": ["dashes forward", "sprints forward", "runs forward as fast as possible"],
    "walk-back": ["walks backward", "walks backwards", "steps backward"],
    "walk-left": ["walks diagonally forward to the left", "walks forward and to the left",
                  "walks diagonally to the left"],
    "walk-turn-left": ["walks forward and turns left", "walks and turns to the left",
                       "walks forward then turns to the left"],
    "bow": ["bows", "bows forward", "takes a bow"],
    "bye": ["waves goodbye with the right hand", "waves the right hand to say goodbye",
            "says goodbye waving the right hand"],
    "byebye": ["waves goodbye with both hands", "waves both hands to say goodbye",
               "says goodbye waving both hands"],
    "guide": ["guides someone with the right hand", "shows the way with the right hand",
              "points the way with the right arm"],
    "respond": ["responds with a gesture", "answers someone with a gesture"],
    "call": ["calls someone over", "waves someone over"],
    "punch": ["throws punches", "punches forward"],
    "kick": ["kicks", "kicks forward"],
    "slash": ["slashes with a sword", "swings a sword"],
    "dance-short": ["dances", "performs a dance"],
    "dance-long": ["dances", "performs a long dance"],
    "wave-both-hands": ["waves both hands", "waves with both hands", "waves both arms"],
    "wave-left-hand": ["waves the left hand", "waves with the left hand", "waves hello with the left hand"],
    "raise-up-both-hands": ["raises both hands", "raises both hands up", "lifts both arms up"],
    "raise-up-left-hand": ["raises the left hand", "raises the left hand up", "lifts the left arm up"],
}
# Style label -> (subjects, manners placed after the verb phrase).
STYLE_PHRASES = {
    "normal": (["a person", "someone", "a man"], ["", "normally", "in a neutral way"]),
    "happy": (["a happy person", "a cheerful person"], ["happily", "cheerfully", "in a happy mood"]),
    "sad": (["a sad person", "an unhappy person"], ["sadly", "in a sad way", "in a sad mood"]),
    "angry": (["an angry person", "a furious person"], ["angrily", "in an angry way", "in anger"]),
    "proud": (["a proud person", "a confident person"], ["proudly", "with pride", "in a proud way"]),
    "not-confident": (["an insecure person", "a shy person"],
                      ["timidly", "without confidence", "in an insecure way"]),
    "masculine": (["a masculine person", "a macho man"], ["in a masculine way", "in a manly manner"]),
    "feminine": (["a feminine person", "a graceful woman"], ["in a feminine way", "in a graceful feminine manner"]),
    "childish": (["a child", "a childish person"], ["childishly", "like a child", "in a childlike way"]),
    "elderly": (["an elderly person", "an old person"],
                ["slowly like an elderly person", "like an old person", "in an elderly way"]),
    "exhausted": (["an exhausted person", "a tired person"], ["wearily", "in an exhausted way", "tiredly"]),
    "active": (["an energetic person", "an active person"], ["energetically", "actively", "with a lot of energy"]),
    "musical": (["a musical performer", "a theatrical person"], ["rhythmically", "like in a musical", "theatrically"]),
    "giant": (["a giant", "a huge heavy person"], ["like a giant", "heavily like a giant", "with big heavy movements"]),
    "chimpira": (["a thug", "a delinquent"], ["like a thug", "with a swagger", "in a cocky way"]),
    "youthful": (["a young person", "a youthful person"], ["youthfully", "in a youthful way", "with youthful energy"]),
}
_GENERIC_SUBJECTS = ["a person", "someone", "the person"]

# Words of a side or a turning sense and their mirror images (lower case); the longest spellings
# come first in the pattern so that "counter-clockwise" is one word, not "counter-" + "clockwise".
_SIDE_SWAPS = {"left": "right", "right": "left", "leftward": "rightward", "rightward": "leftward",
               "leftwards": "rightwards", "rightwards": "leftwards", "clockwise": "counterclockwise",
               "counterclockwise": "clockwise", "counter-clockwise": "clockwise", "anticlockwise": "clockwise",
               "anti-clockwise": "clockwise"}
_SIDE_PATTERN = re.compile(r"(?<![a-z])(" + "|".join(sorted(map(re.escape, _SIDE_SWAPS), key=len, reverse=True))
                           + r")(?![a-z])", re.IGNORECASE)


def _same_case(word: str, like: str) -> str:
    """`word` (lower case) in the case of `like`: all capitals, a capital first letter, or lower."""
    if like.isupper() and len(like) > 1:
        return word.upper()
    return word[0].upper() + word[1:] if like[0].isupper() else word


def mirror_text(text: str) -> str:
    """A caption or label of the mirrored motion: left <-> right, leftward(s) <-> rightward(s),
    clockwise <-> counterclockwise (counter-clockwise and anticlockwise read as counterclockwise),
    matched in any case and written back in the case found ("Right hand" -> "Left hand",
    "LEFT" -> "RIGHT")."""
    return _SIDE_PATTERN.sub(lambda m: _same_case(_SIDE_SWAPS[m.group(1).lower()], m.group(1)), text)


def canonical_content(content: str) -> tuple[str, bool]:
    """(label the phrases know, mirrored?): 'walk-right' -> ('walk-left', True)."""
    if content not in CONTENT_PHRASES and mirror_text(content) in CONTENT_PHRASES:
        return mirror_text(content), True
    return content, False


def take_labels(path: str) -> Optional[tuple[str, str]]:
    """(content, style) of a file named `<set>_<content>_<style>_<number>.bvh`, else None."""
    parts = os.path.splitext(os.path.basename(path))[0].split("_")
    if len(parts) < 4 or not parts[-1].isdigit() or not parts[-3] or not parts[-2]:
        return None
    return parts[-3].lower(), STYLE_SYNONYMS.get(parts[-2].lower(), parts[-2].lower())


def _content_phrases(content: str) -> list:
    base, mirrored = canonical_content(content)
    if base in CONTENT_PHRASES:
        return [mirror_text(p) if mirrored else p for p in CONTENT_PHRASES[base]]
    return [f"performs the motion '{content.replace('-', ' ')}'"]


def label_captions(content: str, style: str, rng: np.random.Generator, count: int = 4) -> list:
    """`count` different sentences for a take of (content, style), at least one naming the
    style in the subject ("an elderly person walks forward.") and one in the manner ("someone
    walks forward slowly like an elderly person.")."""
    verbs = _content_phrases(content)
    subjects, manners = STYLE_PHRASES.get(style, ([f"a {style.replace('-', ' ')} person"],
                                                 [f"in a {style.replace('-', ' ')} way"]))
    by_subject = [f"{s} {v}." for s in subjects for v in verbs]
    by_manner = [f"{g} {v} {m}".strip() + "." for g in _GENERIC_SUBJECTS for v in verbs for m in manners]
    first = [by_subject[int(rng.integers(len(by_subject)))], by_manner[int(rng.integers(len(by_manner)))]]
    rest = [c for c in by_subject + by_manner if c not in first]
    picks = [rest[i] for i in rng.permutation(len(rest))[:max(0, count - 2)]]
    return list(dict.fromkeys(first + picks))[:count]


_VERBS = {"walk": "walks", "run": "runs", "jog": "jogs", "dash": "dashes", "sprint": "sprints",
          "step": "steps", "turn": "turns", "bow": "bows", "take": "takes", "wave": "waves waving",
          "say": "says", "raise": "raises", "lift": "lifts", "point": "points", "show": "shows",
          "guide": "guides", "respond": "responds", "answer": "answers", "call": "calls",
          "throw": "throws", "punch": "punches", "kick": "kicks", "slash": "slashes",
          "swing": "swings", "dance": "dances", "perform": "performs"}
_WORDS = {
    "NOUN": "person man woman child thug delinquent giant performer hand hands arm arms way line "
            "goodbye hello gesture punches sword dance bow mood anger pride confidence energy lot "
            "manner movements motion swagger",
    "ADJ": "happy cheerful sad unhappy angry furious proud confident insecure shy masculine macho "
           "feminine graceful childish childlike elderly old exhausted tired energetic active musical "
           "theatrical huge heavy cocky young youthful neutral big long left right straight",
    "ADV": "forward forwards backward backwards ahead diagonally up over then happily cheerfully sadly "
           "angrily proudly timidly childishly slowly wearily tiredly energetically actively "
           "rhythmically theatrically heavily youthfully normally fast possible",
    "ADP": "with in like to without as of",
    "DET": "a an the both",
    "CCONJ": "and",
}
_LEXICON = {w: (w, pos) for pos, words in _WORDS.items() for w in words.split()}
_LEXICON.update({"hands": ("hand", "NOUN"), "arms": ("arm", "NOUN"), "punches": ("punch", "NOUN"),
                 "movements": ("movement", "NOUN"), "someone": ("someone", "PRON")})
_VERB_FORMS = {form: lemma for lemma, forms in _VERBS.items() for form in [lemma] + forms.split()}


def caption_tokens(caption: str) -> str:
    """HumanML3D's token field: space-separated `lemma/POS`. A word that is both a noun and a verb
    ('waves', 'punches', 'bow') is a noun after a determiner, adjective or verb, else a verb."""
    tokens = []
    for word in re.findall(r"[a-z]+", caption.lower()):
        previous = tokens[-1].split("/")[1] if tokens else ""
        noun = _LEXICON.get(word)
        if word in _VERB_FORMS and not (noun and previous in ("DET", "ADJ", "VERB")):
            lemma, pos = _VERB_FORMS[word], "VERB"
        else:
            lemma, pos = noun or (word, "OTHER")
        tokens.append(f"{lemma}/{pos}")
    return " ".join(tokens)


def caption_line(caption: str) -> str:
    """One texts/<id>.txt line: `caption#tokens#0.0#0.0` (the whole motion)."""
    caption = " ".join(caption.replace("#", " ").split())
    return f"{caption}#{caption_tokens(caption)}#0.0#0.0"


def read_captions_csv(path: str) -> dict:
    """{file key: [captions]} from a CSV of `file,caption` rows (a header row is optional; a file
    may have several rows). Keys are the file column as written, its base name and its stem."""
    captions: dict = {}
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
    except OSError as exc:
        raise ValueError(f"cannot read captions CSV {path}: {exc.strerror}") from None
    for number, row in enumerate(rows, start=1):
        if not row or not "".join(row).strip() or (number == 1 and [c.strip().lower() for c in row[:2]] == ["file", "caption"]):
            continue
        if len(row) < 2 or not row[0].strip() or not row[1].strip():
            raise ValueError(f"{path}:{number}: expected `file,caption`, got {','.join(row)!r}")
        file, caption = row[0].strip(), ",".join(row[1:]).strip()
        for key in {file, os.path.basename(file), os.path.splitext(os.path.basename(file))[0]}:
            captions.setdefault(key, []).append(caption)
    return captions
