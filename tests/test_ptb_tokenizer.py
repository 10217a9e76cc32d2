"""Our PTB tokenizer against pycocoevalcap's (Stanford PTBTokenizer 3.4.1 through Java).

Pinned outputs (taken from the Java tokenizer) run everywhere; where Java and
pycocoevalcap are installed, a corpus of tricky captions and random compositions of
fragments is tokenised by both and must come out identical, line for line."""

import random
import shutil

import pytest

from ouroboros.metrics.ptb_tokenizer import tokenize

# caption -> pycocoevalcap's PTBTokenizer output (Java, CoreNLP 3.4.1), copied from its run
PINNED = {
    "A man riding a wave on top of a surfboard.": "a man riding a wave on top of a surfboard",
    "The dog's bone isn't here, don't you know?": "the dog 's bone is n't here do n't you know",
    'He said "hello" (loudly) & left... at 5:30 p.m.': "he said hello -lrb- loudly -rrb- & left at 5:30 p.m.",
    "a [bracket] {brace} <angle> test": "a -lsb- bracket -rsb- -lcb- brace -rcb- <angle> test",
    "Black-and-white photo of a 1/2 cup of coffee; \xbd colour!":
        "black-and-white photo of a 1/2 cup of coffee 1/2 colour",
    "U.S. flag, Mr. Smith's car -- nice -- cannot gonna wanna":
        "u.s. flag mr. smith 's car nice can not gon na wan na",
    "A $5 bill, 10% off, #1 @home e-mail: a@b.com http://x.org/a.":
        "a $ 5 bill 10 % off # 1 @home e-mail a@b.com http://x.org/a",
    "Caf\xe9 na\xefve \xfcber \u2014 \u201cquoted\u201d \u2018single\u2019 2,000 3.5 \U0001f600 emoji":
        "caf\xe9 na\xefve \xfcber quoted single 2,000 3.5 emoji",
    "a 5 7/8 inch pipe and 10-15 2010-2012": "a 5\xa07/8 inch pipe and 10-15\xa02010-2012",
    "'tis 'n' rock 'n' roll o'clock O'Neill y'all": "'t is 'n' rock 'n' roll o'clock o'neill y' all",
    "The man, etc. the end": "the man etc. the end",
    "co\xadop \xad 1\xad x": "coop 1 x",  # soft hyphens go; one alone is a '-' (never an empty token)
    "see http://x.com/a\xa0": "see http://x.com/a",  # pycocoevalcap's rstrip takes the URL's no-break space
    "see http://x.com/a\xa0 too": "see http://x.com/a\xa0 too",
    "www.e.com/\U0001f600 a \U0001f600 b": "www.e.com/\U0001f600 a b",  # Java's UTF-16: the emoji is 2 characters
}


def test_pinned_outputs_of_the_java_tokenizer():
    assert tokenize(list(PINNED)) == list(PINNED.values())


def test_lines_are_lexed_as_one_text_as_pycocoevalcap_does():
    """'I.' before a line starting 'The' is the pronoun and a period (which goes); at the end
    of the text it is an acronym and keeps its period."""
    assert tokenize(["a sign that reads I.", "The end"]) == ["a sign that reads i", "the end"]
    assert tokenize(["a sign that reads I.", "the end"]) == ["a sign that reads i.", "the end"]
    assert tokenize(["a sign that reads I."]) == ["a sign that reads i."]


def test_line_breaks_inside_a_caption_stay_inside_it():
    """pycocoevalcap would shift every later caption onto the wrong image here; we do not."""
    out = tokenize(["two\r\nlines\u2028here", "a line\nwith a newline", "two\rlines", "next"])
    assert out == ["two lines here", "a line with a newline", "two lines", "next"]


def test_empty_and_blank_captions_keep_their_place():
    assert tokenize(["", "  ", "...", "ok"]) == ["", "", "", "ok"]


FRAGMENTS = (
    "a A man The dog dog's isn't don't can't cannot gonna 'tis 'twas I I. U.S. u.s Mr. Dr etc. St. a.m. p.m e.g. vs. "
    "No. no. fig. Co. Ltd Inc. 1 12 2.5 1,000 3:30 1/2 5-6 10-15 2010 555-1234 (555) $5 US$ #1 @bob #tag a@b.com "
    "www.x.com x.org http://a.b/c file.jpg x-ray black-and-white o'clock O'Neill rock'n'roll 'n' y'all '90s '90 "
    "90's cats' 'em l'amour ( ) [ ] { } < > <b> </b> \" ' ` `` '' \u2019 \u2018 \u201c \u201d \xab \xbb . , ; : ! ? "
    "?! !!! ... .. -- --- ---- \u2014 \u2013 & &amp; * ** / \\ + = % ^ ~ | _ __ @ # :) ;-) :( ^_^ \xbd \xb2 \xb0 "
    "\xd7 caf\xe9 \xf1 \xdf \u20ac \xa3 \xa2 \xa5 \u2026 \U0001f600 Jan. Calif. Pty. c++ C# AT&T S&P-500 3x4 1st "
    "24/7 w/ and/or A+ pro- anti- -LRB- word. word., hello.world Mass. a.k.a. ca. Ph.D. Jr. it's we're you've "
    "they'll he'd I'm won't wanna 'cause 'till c'mon ol' li'l n't 's 're 3. x. A. He It In s S T ten-year-old "
    "12-13-2012 12/13/12 1.2.3 $3.50 5' 6'2\" \"hi\" 'hi' (hi) hi, hi. hi! Bros. Ave. Mt. Sept. Fri. Ark. ark. "
    "Pa. pa. Ill. ill. Miss. miss. Tex. Wash. sq. ext. &amp; &quot; &lt; &gt; &apos; &nbsp; &mdash; &#39; "
    "&eacute; <a\xa0href='x'> <br/> <!DOCTYPE\xa0x> http://x.com/(a) https://e.org/a?b=1,2. <a@b.com> "
    "(555)\xa0123-4567 555.123.4567 1-800-555-1234 :-) :P =] <3 x_x ^.^ (^_^) o_O \xad co\xadop 4\xbd \u2153 "
    "\xb9\xb2 H\u2082O \u207a\xb9 don\u2019t it\u2019s \u2018tis US$5 \u20ac5 \xa310 5\xa2 Pty.\xa0Ltd No.\xa05 "
    "ca.\xa01900 U.S.-U.K. non-U.S. Japan-U.S. S&amp;Ls Cap'n c'est cont'd nor'easter s'mores O'o Dunkin' Ed.D. "
    "y'know ma'am \u3001 \u3002 \xa1 \xbf \u2020 \u2190 \u2200 \xa7 \xa9 \u2122 \xb7 \u2022 \u0410\u0411 "
    "\u65e5\u672c \u0627\u0644 \u0131 \u0130 \u1e9e \ufb01 \u0237 \u02c6 e\u0301 \u200b \ufeff \u3000 \u2009 "
    "\x7f \x00 \x85 www.example.co.uk a.b.c.d file.tar.gz my.file.PDF v1.2.3 +5 -5 5--6 1:2:3 1/2/2020 1\\/2 "
    "\\* *** __init__ ## @x_y #x1 AT&amp;T R&D. Q&A, x/y/z a-b/c-d bi-/tri- .... ?!? \u201e \u2039 "
    "\u203a").split(" ") + ["\t", "  ", "\xa0", "5 7/8", ". . ."]
CHARACTERS = list("abcdeXYZ0129 .,;:!?'\"`-_/\\()[]{}<>&#@$%*+=^~|") + ["\u2019", "\u201c", "\xe9", "\u2014", " "]


def _random_captions(n: int, seed: int) -> list[str]:
    """Half of them fragments put together, half random characters."""
    rng = random.Random(seed)
    return ["".join(rng.choice(FRAGMENTS) + rng.choice([" ", " ", " ", "", "  "]) for _ in range(rng.randint(1, 12)))
            .strip(" ") if k % 2 else "".join(rng.choice(CHARACTERS) for _ in range(rng.randint(1, 30)))
            for k in range(n)]


CORPUS = list(PINNED) + [
    "a.k.a.x. etc.. 'em. I. The", "A man 's hat.", "the 5 year old boy", "Two men , one woman .",
    "A group of people standing around a table with food on it .", "An elephant (a big one) in a zoo.",
    "A sign reads 'STOP'.", "A plate with eggs, toast & bacon.", "a 1980's car", "A train on tracks near St. Louis.",
    "w/; \u3000www.x.com a\xa0www.y.com", "a@b.c\U0001f600, http://a.b/\U0001f600\U0001f601) x.com/\xa0\x85",
]


@pytest.mark.skipif(shutil.which("java") is None, reason="the Java tokenizer needs Java (apt-get install "
                    "default-jre-headless)")
def test_same_tokens_as_pycocoevalcaps_java_tokenizer():
    ptb = pytest.importorskip("pycocoevalcap.tokenizer.ptbtokenizer")
    captions = CORPUS + _random_captions(2000, seed=23)
    java = ptb.PTBTokenizer().tokenize({0: [{"caption": c} for c in captions]})[0]
    ours = tokenize(captions)
    differ = [(c, j, o) for c, j, o in zip(captions, java, ours) if j != o]
    assert not differ, differ[:5]
