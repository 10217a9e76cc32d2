"""Caption tokenisation exactly as pycocoevalcap does it, without Java.

pycocoevalcap (the COCO caption evaluation every captioning paper reports) tokenises
candidates and references with Stanford CoreNLP 3.4.1's PTBTokenizer
(``-preserveLines -lowerCase``), then drops the tokens in `PUNCTUATIONS`. This module
re-implements that tokenizer: the rules of its JFlex lexer (PTBLexer, CoreNLP 3.4.1,
default options), applied the way JFlex applies them -- at each position the rule with
the longest match wins, its trailing context counted; among equally long matches the
earlier rule -- and then the lowercasing and the punctuation list.

What follows from the Java tokenizer and is reproduced here, quirks included: "don't"
-> "do n't", "cannot" -> "can not", "gonna" -> "gon na", "it's" -> "it 's";
parentheses and brackets become ``-lrb-`` ``-rrb-`` ``-lsb-`` ``-rcb-``..., which the
lowercasing puts out of reach of pycocoevalcap's punctuation list (it names ``-LRB-``),
so they stay as words; a fraction or a phone-number-like run of digits with spaces is
one token holding a no-break space; abbreviations and acronyms keep their period
("mr.", "u.s.", "a."); untokenizable characters (emoji, most symbols outside the BMP's
letters) are dropped. pycocoevalcap tokenises all captions of one call as the lines of
one text, so a caption's end can depend on the next line's start ("...the letter A."
before a line starting "The" loses the period): `tokenize` does the same.

Where this differs, on purpose: pycocoevalcap turns only ``\\n`` inside a caption into a
space, so a caption holding another line break (``\\r``, U+2028, U+2029, ``\\v``,
``\\f``) becomes two lines there and shifts every later caption onto the wrong image;
here it is one caption, the line break a space. Likewise an SGML tag whose quoted
attribute runs from one caption into the next (``<a b='x`` then ``y'>``) is one token
across both there, and not here. Letters and digits are those of Python's Unicode
database (Java 7's differ for characters added to Unicode since). As in Java, text is
lexed in UTF-16: a character beyond the BMP (an emoji) is two characters to the rules.
"""

from __future__ import annotations

import functools
import re
from typing import Sequence

from ouroboros.metrics.ptb_rules import NEWLINE_TOKEN, SKIP, rules

try:  # the regex parser, to find which characters each rule can start with (speed only)
    from re import _constants as _C, _parser as _P
except ImportError:  # Python 3.10
    import sre_constants as _C  # type: ignore[no-redef]
    import sre_parse as _P  # type: ignore[no-redef]

# pycocoevalcap.tokenizer.ptbtokenizer.PUNCTUATIONS
PUNCTUATIONS = frozenset(["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-",
                          "--", "...", ";"])
_OTHER_LINE_BREAKS = re.compile("\r\n|[\r\u2028\u2029\x0b\x0c]")

# Fast paths for the common case. An ASCII space or tab: no rule starts with one but the one
# that skips a run of spaces (Unicode ones included). A run of ASCII letters before a space,
# a line end or the end: no rule makes it anything but one token, except the words in
# _SPLIT, which are split (as `ptb_rules` does).
_PLAIN = re.compile("(?P<space>[ \t][ \t\xa0\u2000-\u200a\u3000]*)|[A-Za-z]+(?=[ \n]|$)")
_SPLIT = {"cannot": 3, "gonna": 2, "gotta": 2, "lemme": 2, "gimme": 2, "wanna": 2}


def _char_test(op, av, ignore: bool):
    """A test that a character can be matched by one regex item (never False when it can)."""
    def variants(c):  # the character and its other cases (Python's IGNORECASE folds one to one)
        return [v for v in (c, c.lower(), c.upper(), c.casefold()) if len(v) == 1] if ignore else [c]
    if op is _C.LITERAL:
        return lambda c: chr(av) in variants(c)
    if op is not _C.IN or any(o is _C.NEGATE for o, _ in av):
        return lambda c: True  # NOT_LITERAL, ANY, negated sets: nearly everything
    categories = {_C.CATEGORY_DIGIT: str.isdecimal, _C.CATEGORY_SPACE: str.isspace,
                  _C.CATEGORY_WORD: lambda c: c.isalnum() or c == "_"}
    parts = []
    for o, a in av:
        if o is _C.LITERAL:
            parts.append(lambda c, a=a: ord(c) == a)
        elif o is _C.RANGE:
            parts.append(lambda c, a=a: a[0] <= ord(c) <= a[1])
        else:
            parts.append(categories.get(a, lambda c: True))
    return lambda c: any(part(v) for v in variants(c) for part in parts)


def _first(items, ignore: bool = False) -> tuple[list, bool]:
    """Tests one of which a match's first character passes, and whether `items` can match
    nothing at all. Anything not understood allows every character: it costs speed only."""
    tests = []
    for op, av in items:
        if op is _C.SUBPATTERN:
            found, empty = _first(av[-1], ignore or bool(av[1] & re.IGNORECASE))
        elif op is _C.BRANCH:
            branches = [_first(b, ignore) for b in av[1]]
            found, empty = [t for b in branches for t in b[0]], any(b[1] for b in branches)
        elif op in (_C.MAX_REPEAT, _C.MIN_REPEAT):
            found, empty = _first(av[2], ignore)
            empty = empty or av[0] == 0
        elif op in (_C.AT, _C.ASSERT, _C.ASSERT_NOT):
            continue  # zero width: the first character is the next item's
        elif op in (_C.LITERAL, _C.NOT_LITERAL, _C.IN, _C.ANY):
            found, empty = [_char_test(op, av, ignore)], False
        else:
            return [lambda c: True], True
        tests += found
        if not empty:
            return tests, False
    return tests, True


@functools.cache
def _first_tests() -> list[list]:
    return [_first(_P.parse(regex.pattern))[0] for regex, _, _ in rules()]


_CANDIDATES: dict[str, list] = {}


def _candidates(c: str) -> list:
    """The rules that can match at a position starting with `c`, in order."""
    if c not in _CANDIDATES:
        _CANDIDATES[c] = [r for r, tests in zip(rules(), _first_tests()) if any(t(c) for t in tests)]
    return _CANDIDATES[c]


def _lex(text: str) -> list[str]:
    """PTBLexer's tokens of `text` (line ends as NEWLINE_TOKEN), before lowercasing."""
    tokens, pos = [], 0
    while pos < len(text):
        plain = _PLAIN.match(text, pos)
        if plain is not None:
            if plain.lastgroup != "space":
                word = plain.group()
                cut = len(word) - _SPLIT.get(word.lower(), 0)
                tokens.extend([word[:cut], word[cut:]] if cut < len(word) else [word])
            pos = plain.end()
            continue
        best, best_len = None, 0
        for rule in _candidates(text[pos]):
            found = rule[0].match(text, pos)
            if found is not None and found.end() - pos > best_len:
                best, best_len, match = rule, found.end() - pos, found
        regex, back, action = best
        end = match.start("t") if "t" in regex.groupindex else match.end()
        text_of = text[pos:end]
        if back == "acronym":  # "I." before "The": the letter alone; else the acronym, then its period again
            back = 1
            token = text_of[:-1] if len(text_of) == 2 else text_of
        elif back == "period":  # "etc." then its period again (a sentence end)
            back, token = 1, text_of
        else:
            token = text_of[:len(text_of) - back]
        if action is not SKIP:
            tokens.append(action(token))
        pos = end - back
    return tokens


_ASTRAL = re.compile("[\U00010000-\U0010ffff]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _surrogates(c: str) -> str:
    """A character beyond the BMP as Java holds it: a high and a low surrogate."""
    code = ord(c) - 0x10000
    return chr(0xD800 + (code >> 10)) + chr(0xDC00 + (code & 0x3FF))


def _paired(token: str) -> str:
    """Surrogate pairs joined back into characters; a lone one is '?', as Java writes it."""
    joined = token.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")
    return _LONE_SURROGATE.sub("?", joined)


def tokenize(captions: Sequence[str]) -> list[str]:
    """Each caption tokenised as pycocoevalcap's PTBTokenizer does it: its tokens joined
    by single spaces, lowercased, pycocoevalcap's `PUNCTUATIONS` left out. The captions
    are lexed as the lines of one text, as pycocoevalcap does."""
    lines = [_OTHER_LINE_BREAKS.sub(" ", c.replace("\n", " ")) for c in captions]
    text = "\n".join(lines)
    astral = _ASTRAL.search(text) is not None
    if astral:  # Java lexes UTF-16: a character beyond the BMP is two (surrogate) characters
        text = _ASTRAL.sub(lambda m: _surrogates(m.group()), text)
    java: list[list[str]] = [[]]  # the Java tokenizer's output lines, as token lists
    for token in _lex(text):
        if token == NEWLINE_TOKEN:
            java.append([])
        else:
            java[-1].append(_paired(token).lower() if astral else token.lower())
    if len(java) != len(lines):  # cannot happen: only the joins are line ends
        raise RuntimeError(f"tokenizer: {len(java)} lines out of {len(lines)} in")
    # then pycocoevalcap's own step, as it is written (rstrip: a URL's trailing no-break space goes)
    return [" ".join(w for w in " ".join(t).rstrip().split(" ") if w not in PUNCTUATIONS) for t in java]
