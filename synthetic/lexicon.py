"""The caption vocabulary: verb forms, parts of speech, number words, and HumanML3D's token
field of a caption (space-separated `lemma/POS`)."""
from __future__ import annotations

import re

# The caption verbs by how they inflect (third person singular, gerund); VERB_FORMS spells them out.
_VERBS_REGULAR = ("walk sprint back turn twirl do jump leap bend lower stand bow kick perform throw lift hold "
                  "keep applaud veer")  # walks, walking
_VERBS_SIBILANT = "dash crouch punch box stretch"  # dashes, dashing
_VERBS_SILENT_E = "take move shuffle rotate make balance rise strike wave raise alternate"  # takes, taking
_VERBS_DOUBLED = "jog run step sidestep spin hop squat sit get put clap"  # jogs, jogging
_IRREGULAR_THIRD_PERSON = {"do": "does"}


def _add_s(word: str) -> str:
    """'walks', 'dashes': the -s of plurals and of the third person singular."""
    return word + "es" if word.endswith(("ch", "sh", "x", "s")) else word + "s"


def _verb_forms() -> dict:
    """lemma -> (third person singular, gerund) of every caption verb."""
    gerund_of = {}
    for lemma in (_VERBS_REGULAR + " " + _VERBS_SIBILANT).split():
        gerund_of[lemma] = lemma + "ing"
    for lemma in _VERBS_SILENT_E.split():
        gerund_of[lemma] = lemma[:-1] + "ing"
    for lemma in _VERBS_DOUBLED.split():
        gerund_of[lemma] = lemma + lemma[-1] + "ing"
    return {lemma: (_IRREGULAR_THIRD_PERSON.get(lemma, _add_s(lemma)), gerund) for lemma, gerund in gerund_of.items()}


VERB_FORMS = _verb_forms()
_WORDS_BY_POS = {
    "NOUN": "person man woman human step hand arm leg foot feet fist time circle jump squat kick punch head "
            "body shoulder height side place air pace knee seat bow turn spin chest front chair position "
            "hello distance way bit quarter half hop degree curve waist moment while speed",
    "NUM": "one two three four five six seven eight nine ten eleven twelve ninety hundred eighty",
    "ADJ": "left right high low deep slight small long short quick slow full few several shallow steady "
           "light brisk normal big single sitting jogging front little",
    "ADV": "forward forwards backward backwards back ahead sideways around up down away quickly slowly "
           "briskly fast then first afterwards again twice once deeply slightly repeatedly rapidly "
           "together alternately far there straight halfway lightly steadily energetically gently very really",
    "ADP": "with to on in into at of for over above out before after like by",
    "DET": "a an the his her their both all",
    "PRON": "someone it them himself herself themselves",
    "CCONJ": "and or",
    "SCONJ": "while as if",
    "AUX": "is",
}
NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
                "eleven", "twelve"]
# After these words a noun-or-verb ('steps', 'waves') is the verb.
_SUBJECT_WORDS = {"person", "man", "woman", "someone", "human", "and", "then", "first", "afterwards"}


def plural(noun: str) -> str:
    return "feet" if noun == "foot" else _add_s(noun)


def _build_lexicon() -> dict:
    """word -> (lemma, part of speech); verbs take precedence over other parts of speech."""
    lexicon = {}
    for pos, words in _WORDS_BY_POS.items():
        for word in words.split():
            lexicon.setdefault(word, (word, pos))
            if pos == "NOUN":
                lexicon.setdefault(plural(word), (word, pos))
    for lemma, forms in VERB_FORMS.items():
        for word in (lemma,) + forms:
            lexicon[word] = (lemma, "VERB")
    lexicon["back"] = ("back", "ADV")  # 'back up', 'stands back up'
    lexicon["raised"] = ("raise", "VERB")  # 'keeps it raised'
    return lexicon


_LEXICON = _build_lexicon()
_NOUN_LEMMA = {form: noun for noun in _WORDS_BY_POS["NOUN"].split() for form in (noun, plural(noun))}
_VERB_LEMMA = {form: lemma for lemma, forms in VERB_FORMS.items() for form in (lemma,) + forms}
_NOUN_VERBS = set(_NOUN_LEMMA) & set(_VERB_LEMMA)  # 'steps', 'kicks', 'waves', ...


def caption_tokens(caption: str) -> str:
    """HumanML3D's token field of a caption: space-separated `lemma/POS` (punctuation dropped).

    Words that are both a noun and a verb ('steps', 'waves', 'kicks') are verbs right after
    the subject or a conjunction, nouns elsewhere.
    """
    words = re.findall(r"[a-z]+", caption.lower())
    tokens = []
    for i, word in enumerate(words):
        lemma, pos = _LEXICON.get(word, (word, "OTHER"))
        if word in _NOUN_VERBS:
            verb_here = i > 0 and words[i - 1] in _SUBJECT_WORDS
            lemma, pos = (_VERB_LEMMA[word], "VERB") if verb_here else (_NOUN_LEMMA[word], "NOUN")
        tokens.append(f"{lemma}/{pos}")
    return " ".join(tokens)


def count_phrase(n: int, noun: str) -> str:
    """'one step', 'four quick steps' (the last word of `noun` is pluralised)."""
    words = noun.split()
    if n != 1:
        words[-1] = plural(words[-1])
    return f"{NUMBER_WORDS[n] if n < len(NUMBER_WORDS) else n} {' '.join(words)}"
