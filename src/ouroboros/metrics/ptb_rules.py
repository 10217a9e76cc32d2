"""PTBLexer's rules (Stanford CoreNLP 3.4.1, default options), as Python regexes.

The lexer of the tokenizer pycocoevalcap runs, rule by rule and in its order, for
`ptb_tokenizer` to apply the way JFlex does. JFlex's ``%caseless`` makes literal words
case-insensitive but not character classes: literals here are wrapped in ``(?i:...)``
(`_ci`) and classes are left as they are. JFlex takes the longest match of a regex
and Python the first alternative that matches, so alternatives are ordered longest
first where it matters (tests/test_ptb_tokenizer.py checks them against the Java
tokenizer). Each rule is (regex, characters pushed back, action): a regex with a group
``t`` has trailing context (JFlex's ``r1/r2``: counted in the match's length, not in
the token), and an action maps the matched text to the token (`SKIP`: no token).
"""

from __future__ import annotations

import functools
import re
import unicodedata

NEWLINE_TOKEN = "\n"


def _bmp_class(predicate) -> str:
    """A regex character class body of the BMP characters for which `predicate` holds."""
    out, start = [], None
    for code in range(0x10000 + 1):
        inside = code < 0x10000 and not 0xD800 <= code < 0xE000 and predicate(chr(code))
        if inside and start is None:
            start = code
        elif not inside and start is not None:
            out.append(f"\\u{start:04x}" + (f"-\\u{code - 1:04x}" if code - 1 > start else ""))
            start = None
    return "".join(out)


def _ci(*words: str) -> str:
    """Literal words, case-insensitive (JFlex's %caseless: literals only, never classes)."""
    return "(?i:" + "|".join(sorted(words, key=len, reverse=True)) + ")"


@functools.cache
def _macros() -> dict[str, str]:
    m: dict[str, str] = {}
    m["L"] = "[" + _bmp_class(lambda c: unicodedata.category(c)[0] == "L") + "]"  # [:letter:]
    m["D"] = "[" + _bmp_class(lambda c: unicodedata.category(c) == "Nd") + "]"  # [:digit:]
    m["UPPER"] = "[" + _bmp_class(lambda c: unicodedata.category(c) == "Lu") + "]"
    m["SGML"] = (r"<(?:[!?][A-Za-z-][^>\r\n]*|[A-Za-z][A-Za-z0-9_:.-]*(?: +(?:[A-Za-z][A-Za-z0-9_:.-]* *= *"
                 r"""(?:'[^'\n]*'|"[^"\n]*")|[A-Za-z][A-Za-z0-9_:.-]*))* */?|/[A-Za-z][A-Za-z0-9_:.-]*) *>""")
    m["SPMDASH"] = "&" + _ci("MD", "mdash", "ndash") + ";|[\x96\x97\u2013\u2014\u2015]"
    m["SPAMP"] = "&" + _ci("amp") + ";"
    m["SPPUNC"] = "&(?:" + _ci("HT", "TL", "UR", "LR", "QC", "QL", "QR", "odq", "cdq") + "|#[0-9]+);"
    m["SPLET"] = "&[aeiouAEIOU]" + _ci("acute", "grave", "uml") + ";"
    m["SPACE"] = "[ \t\xa0\u2000-\u200a\u3000]"
    m["SPACENL"] = "(?:[ \t\xa0\u2000-\u200a\u3000]|\r\n|[\r\n\u2028\u2029\x0b\x0c\x85])"
    m["SENTEND"] = f"{m['SPACENL']}(?:{m['SPACENL']}|{m['UPPER']}|{m['SGML']})"
    d, let = m["D"], m["L"]
    m["DATE"] = f"{d}{{1,2}}[-/]{d}{{1,2}}[-/]{d}{{2,4}}"
    m["NUMBER"] = f"[-+]?(?:{d}*(?:[.:,\xad\u066b\u066c]{d}+)+|{d}+)"
    m["SUBSUPNUM"] = "[\u207a\u207b\u208a\u208b]?(?:[\u2070\xb9\xb2\xb3\u2074-\u2079]+|[\u2080-\u2089]+)"
    m["FRAC"] = f"(?:{d}{{1,4}}[- \xa0])?{d}{{1,4}}(?:\\\\?/|\u2044){d}{{1,4}}"
    m["FRAC2"] = "[\xbc\xbd\xbe\u2153-\u215e]"
    m["DOLSIGN"] = r"[A-Z]*\$|#"
    m["DOLSIGN2"] = "[\xa2\xa3\xa4\xa5\x80\u20a0\u20ac\u060b\u0e3f\u20a4\uffe0\uffe1\uffe5\uffe6]"
    # letters beyond [:letter:] that PTBLexer also takes as letters (combining marks, ...)
    extra = ("\xad\u0237-\u024f\u02c2-\u02c5\u02d2-\u02df\u02e5-\u02ff\u0300-\u036f\u0370-\u037d\u0384\u0385"
             "\u03cf\u03f6\u03fc-\u03ff\u0483-\u0487\u04cf\u04f6-\u04ff\u0510-\u0525\u055a-\u055f\u0591-\u05bd"
             "\u05bf\u05c1\u05c2\u05c4\u05c5\u05c7\u0615-\u061a\u063b-\u063f\u064b-\u065e\u0670\u06d6-\u06ef"
             "\u06fa-\u06ff\u070f\u0711\u0730-\u074f\u0750-\u077f\u07a6-\u07b1\u07ca-\u07f5\u07fa\u0900-\u0903"
             "\u093c\u093e-\u094e\u0951-\u0955\u0962-\u0963\u0981-\u0983\u09bc-\u09c4\u09c7\u09c8\u09cb-\u09cd"
             "\u09d7\u09e2\u09e3\u0a01-\u0a03\u0a3c\u0a3e-\u0a4f\u0a81-\u0a83\u0abc-\u0acf\u0b82\u0bbe-\u0bc2"
             "\u0bc6-\u0bc8\u0bca-\u0bcd\u0c01-\u0c03\u0c3e-\u0c56\u0d3e-\u0d44\u0d46-\u0d48\u0e30-\u0e3a"
             "\u0e47-\u0e4e\u0eb1-\u0ebc\u0ec8-\u0ecd")
    letter = f"(?:{let}|{m['SPLET']}|[{extra}])"
    m["WORD"] = f"{letter}(?:{letter}|{d})*(?:[.!?]{letter}(?:{letter}|{d})*)*"
    exts = _ci(*"bat bmp c class cgi cpp dll doc docx exe gif gz h htm html jar java jpeg jpg mov mp3 pdf php pl "
                "png ppt ps py sql tar txt wav x xml zip".split())
    m["FILENAME"] = f"(?:{letter}|{d})+(?:[.](?:{letter}|{d})+)*[.]{exts}"
    m["APOS"] = "(?:['\x92\u2019]|&" + _ci("apos") + ";)"
    m["APOSETC"] = f"(?:{m['APOS']}|[`\x91\u2018\u201b])"
    ld = f"(?:{let}|{d})"
    m["THING"] = (f"(?:[dDoOlL]{m['APOSETC']}{ld})?{ld}+"
                  f"(?:[-_\u058a\u2010\u2011](?:[dDoOlL]{m['APOSETC']}{ld})?{ld}+)*")
    m["THINGA"] = f"[A-Z]+(?:(?:[+&]|{m['SPAMP']})[A-Z]+)+"
    m["THING3"] = r"[A-Za-z0-9]+(?:-[A-Za-z]+){0,2}(?:\\?/[A-Za-z0-9]+(?:-[A-Za-z]+){0,2}){1,2}"
    us = f"{_ci('u')}\\.{_ci('s')}"
    m["ACRO"] = (f"{_ci('Canada', 'Sino', 'Korean', 'EU', 'Japan', 'non')}-{us}"
                 f"|{us}\\.-(?:{us}\\.{_ci('s')}\\.{_ci('r')}|{_ci('u')}\\.{_ci('k')})|[A-Za-z](?:\\.[A-Za-z])*")
    acro2 = m["ACRO"][:-1] + "+"  # at least one inner period
    m["HTHING"] = f"[A-Za-z0-9][A-Za-z0-9.,\xad]*(?:-(?:(?:{acro2})\\.|[A-Za-z0-9\xad]+))+"
    m["REDAUX"] = f"{m['APOS']}(?:{_ci('re', 've', 'll')}|[msdMSD])"
    m["SWORD"] = "[A-Za-z\xad]*[A-MO-Za-mo-z]\xad*"
    m["SREDAUX"] = f"{_ci('n')}{m['APOSETC']}{_ci('t')}"
    a, aetc = m["APOS"], m["APOSETC"]
    m["APOWORD"] = "|".join([
        f"{a}{_ci('n')}{a}?", f"[lLdDjJ]{a}", f"{_ci('Dunkin', 'somethin', 'ol')}{a}", f"{a}{_ci('em')}",
        f"[A-HJ-XZn]{aetc}{let}{{2}}{let}*", f"{a}[2-9]0{_ci('s')}", f"{a}{_ci('till', 'til')}",
        f"{let}{let}*[aeiouyAEIOUY]{aetc}[aeiouA-Z]{let}*", f"{a}{_ci('cause')}", f"{_ci('cont')}'{_ci('d')}\\.?",
        _ci("'twas", "nor'easter", "c'mon", "e'er", "s'mores", "ev'ry", "li'l", "nat'l"), f"O{aetc}{_ci('o')}"])
    m["FULLURL"] = _ci("https", "http") + r"://[^ \t\n\f\r\"<>|(){}]+[^ \t\n\f\r\"<>|.!?(){},-]"
    m["LIKELYURL"] = (r"(?:" + _ci("www") + r"\.(?:[^ \t\n\f\r\"<>|.!?(){},]+\.)+[a-zA-Z]{2,4}"
                      r"|(?:[^ \t\n\f\r\"`'<>|.!?(){},-_$]+\.)+" + _ci("com", "net", "org", "edu") + ")"
                      r"(?:/[^ \t\n\f\r\"<>|()]+[^ \t\n\f\r\"<>|.!?(){},-])?")
    host = "[^ \t\n\f\r\"<>|(){}.\xa0]+"
    m["EMAIL"] = (f"(?:&{_ci('lt')};|<)?[a-zA-Z0-9][^ \t\n\f\r\"<>|()\xa0{{}}]*@(?:{host}\\.)*{host}"
                  f"(?:&{_ci('gt')};|>)?")
    m["TWITTER"] = f"@[a-zA-Z_][a-zA-Z_0-9]*|#{letter}+"
    abbrev1 = [_ci("Jan", "Feb", "Mar", "Apr", "Jun", "Jul", "Aug", "Sep", "Sept", "Oct", "Nov", "Dec"),
               _ci("Mon", "Tue", "Tues", "Wed", "Thu", "Thurs", "Fri"),
               _ci("Ala", "Ariz", "Calif", "Colo", "Conn", "Ct", "Dak", "Fla", "Ga", "Ind", "Kans", "Kan", "Ky", "Md",
                   "Mich", "Minn", "Mo", "Mont", "Neb", "Nev", "Okla", "Penn", "Tenn", "Va", "Vt", "Wisc", "Wis",
                   "Wyo"),
               "A" + _ci("z"), "A" + _ci("rk"), "D" + _ci("el"), "I" + _ci("ll"), "L" + _ci("a"), "M" + _ci("ass"),
               "M" + _ci("iss"), "O" + _ci("re"), "P" + _ci("a"), "T" + _ci("ex"), "W" + _ci("ash"),
               _ci("Inc", "Cos", "Co", "Corp", "Ltd", "Plc", "Rt", "Bancorp", "Bhd", "Assn", "Univ", "Intl", "Sys"),
               f"{_ci('p')}{_ci('p')}?{_ci('t')}[ye]{_ci('s')}?",
               _ci("tel", "est", "ext", "sq", "Jr", "Sr", "Bros", "Blvd", "Rd", "Esq", "etc", "al", "seq", "Bldg"),
               f"{_ci('Ed', 'Ph')}\\.{_ci('D')}"]
    m["ABBREV1"] = "(?:" + "|".join(abbrev1) + ")\\."
    # ACRO first: Python takes the first alternative that matches, JFlex the longest ("a.k.a.x.")
    abbrev4 = [m["ACRO"], _ci("Mr", "Mrs", "Ms", "Drs", "Dr", "Profs", "Prof", "Sens", "Sen", "Reps", "Rep",
                              "Attys", "Atty", "Lt", "Col", "Gen", "Messrs", "Govs", "Gov", "Adm", "Rev", "Maj",
                              "Sgt", "Cpl", "Pvt", "Capt", "Ste", "St", "Ave", "Pres", "Lieut", "Hon", "Brig",
                              "Comdr", "Cmdr", "Pfc", "Spc", "Supts", "Supt", "Det", "Mt", "Ft", "Adj", "Adv",
                              "Asst", "Assoc", "Ens", "Insp", "Mlle", "Mme", "Msgr", "Sfc", "vs", "Alex", "Wm",
                              "Jos", "Cie", "cf", "TREAS", "Ph", "Invt", "Elec", "Natl", "Dept"),
               f"{_ci('m')}[ft]{_ci('g')}",
               "M" + _ci("iss"), f"{_ci('a')}\\.{_ci('k')}\\.{_ci('a')}"]
    m["ABBREV4"] = "(?:" + "|".join(abbrev4) + ")"
    m["ABBREV3"] = _ci("ca", "figs", "fig", "prop", "nos", "no", "art", "bldg", "pp", "op") + "\\."
    m["PHONE"] = (r"(?:\([0-9]{2,3}\)[ \xa0]?|(?:\+\+?)?(?:[0-9]{2,4}[- \xa0])?[0-9]{2,4}[- \xa0])[0-9]{3,4}"
                  r"[- \xa0]?[0-9]{3,5}|(?:(?:\+\+?)?[0-9]{2,4}\.)?[0-9]{2,4}\.[0-9]{3,4}\.[0-9]{3,5}")
    m["LDOTS"] = "\\.{3,5}|(?:\\.[ \xa0]){2,4}\\.|[\x85\u2026]"
    m["INSENTP"] = "[,;:\u3001]"
    m["QUOTES"] = (f"&{_ci('apos')};|''|[`\u2018\u2019\u201a\u201b\u201c\u201d\x91\x92\x93\x94\u201e\u201f\u2039"
                   "\u203a\xab\xbb]{1,2}|['\x92\u2019]")
    m["DBLQUOT"] = '"|&' + _ci("quot") + ";"
    m["TBSPEC"] = (f"-{_ci('RRB', 'LRB', 'RCB', 'LCB', 'RSB', 'LSB')}-|{_ci('C')}\\.{_ci('D')}\\.{_ci('s')}"
                   f"|{_ci('pro', 'anti')}-|{_ci('S')}(?:&|{m['SPAMP']})(?:{_ci('P')}-500|{_ci('Ls')})"
                   f"|{_ci('Cap')}{a}{_ci('n')}|{_ci('c')}{a}{_ci('est')}")
    m["SMILEY"] = r"[<>]?[:;=][\-o*']?[()DPdpO\\{@|\[\]]"
    m["ASIANSMILEY"] = (r"[\^x=~<>]\.\[\^x=~<>]|[\-\^x=~<>']_[\-\^x=~<>']|\([\-\^x=~<>'][_.]?[\-\^x=~<>']\)"
                        r"|\([\^x=~<>']-[\^x=~<>'`]\)")
    m["MISCSYMBOL"] = ("[+%&~^|\\\\\xa6\xa7\xa8\xa9\xac\xae\xaf\xb0-\xba\xd7\xf7\u0387\u05be\u05c0\u05c3\u05c6"
                       "\u05f3\u05f4\u0600-\u0603\u0606-\u060a\u060c\u0614\u061b\u061e\u066a\u066d\u0703-\u070d"
                       "\u07f6\u07f7\u07f8\u0964\u0965\u0e4f\u1fbd\u2016\u2017\u2020-\u2023\u2030-\u2038\u203b"
                       "\u203e-\u2042\u2044\u207a-\u207f\u208a-\u208e\u2100-\u214f\u2190-\u21ff\u2200-\u2bff\u3012"
                       "\u30fb\uff01-\uff0f\uff1a-\uff20\uff3b-\uff40\uff5b-\uff65]")
    return m


# -- the rules, in PTBLexer's order (default options: traditional PTB3 mode) -------------------

_LATEX_QUOTES = [(re.compile("[\x91\u2018\u201b\u2039]"), "`"), (re.compile("[\x92\u2019\u203a]"), "'"),
                 (re.compile("[\x93\u201c\xab]"), "``"), (re.compile("[\x94\u201d\xbb]"), "''")]
_FRACTIONS = {"\xbc": "1/4", "\xbd": "1/2", "\xbe": "3/4", "\u2153": "1/3", "\u2154": "2/3"}
_BRACKETS = {"{": "-LCB-", "}": "-RCB-", "[": "-LSB-", "]": "-RSB-", "(": "-LRB-", ")": "-RRB-"}


def _quote(left: bool):
    def action(text: str) -> str:
        text = re.sub("&apos;|'", "`" if left else "'", text)
        text = re.sub('"|&quot;', "``" if left else "''", text)
        for pattern, repl in _LATEX_QUOTES:
            text = pattern.sub(repl, text)
        return text
    return action


def _parens(text: str) -> str:
    return text.replace("(", "-LRB-").replace(")", "-RRB-")


def _currency(text: str) -> str:
    return re.sub("[\x80\xa4\u20a0\u20ac]", "$", text.replace("\xa2", "cents").replace("\xa3", "#"))


def _keep(text: str) -> str:
    return text


def _soft(text: str) -> str:
    """Soft hyphens dropped; a token of nothing but soft hyphens becomes '-' (never empty)."""
    return text.replace("\xad", "") or "-"


def _nbsp(text: str) -> str:
    return text.replace(" ", "\xa0")


def _amp(text: str) -> str:
    return re.sub("(?i:&amp;)", "&", text)


SKIP = None  # an action that makes no token


@functools.cache
def rules() -> list[tuple[re.Pattern, int, object]]:
    """(regex, characters pushed back, action) per rule. A regex with trailing context
    has a group ``t``: JFlex counts the context in the match length but not in the token."""
    m = _macros()
    spaces = "[ \t\xa0\u2000-\u200a\u3000]+"
    follow = "|".join(f"{w[0]}{_ci(w[1:])}" if len(w) > 1 else w for w in (
        "About According Additionally After An A As At But Earlier He Her Here However If In It Last Many More "
        "Now Once One Other Our She Since So Some Such That The Their Then There These They This We When While What "
        "Yet You").split()) + "|M" + _ci("r") + "\\.|M" + _ci("s") + "\\."
    table = [
        (_ci("c") + "[+][+]", 0, _keep),
        (_ci("c", "f") + "#", 0, _keep),
        (_ci("cannot"), 3, _keep),
        (_ci("'twas"), 3, _keep),
        (_ci("'tis"), 2, _keep),
        (_ci("gonna", "gotta", "lemme", "gimme", "wanna"), 2, _keep),
        (m["SGML"], 0, _nbsp),
        (m["SPMDASH"], 0, lambda t: "--"),
        (m["SPAMP"], 0, _amp),
        (m["SPPUNC"], 0, _keep),
        (f"{m['WORD']}(?P<t>{m['REDAUX']})", 0, _soft),
        (f"{m['SWORD']}(?P<t>{m['SREDAUX']})", 0, _soft),
        (m["WORD"], 0, _soft),
        (m["APOWORD"], 0, _keep),
        (f"{_ci('y')}{m['APOS']}(?P<t>{m['L']})", 0, _keep),
        (m["FULLURL"], 0, _keep),
        (m["LIKELYURL"], 0, _keep),
        (m["EMAIL"], 0, _keep),
        (m["TWITTER"], 0, _keep),
        (f"{m['REDAUX']}(?P<t>[^A-Za-z])", 0, _quote(False)),
        (f"{m['SREDAUX']}(?P<t>[^A-Za-z])", 0, _quote(False)),
        (m["DATE"], 0, _keep),
        (m["NUMBER"], 0, _soft),
        (m["SUBSUPNUM"], 0, _keep),
        (m["FRAC"], 0, _nbsp),
        (m["FRAC2"], 0, lambda t: "".join(_FRACTIONS.get(c, c) for c in t)),
        (m["TBSPEC"], 0, _amp),
        (m["THING3"], 0, _keep),
        (m["DOLSIGN"], 0, _keep),
        (m["DOLSIGN2"], 0, _currency),
        (f"(?:{m['ACRO']})\\.(?P<t>(?:{m['SPACENL']})+(?:{follow}|{m['SGML']}){m['SPACENL']})", "acronym", _keep),
        (f"{m['ABBREV3']}(?P<t>{m['SPACENL']}?{m['D']})", 0, _keep),
        (f"(?:{_ci('pt')}[eyEY]|{_ci('co')})\\.(?P<t>{m['SPACE']}{_ci('ltd', 'lim')})", 0, _keep),
        (f"{m['ABBREV1']}(?P<t>{m['SENTEND']})", "period", _keep),
        (f"{m['ABBREV1']}(?P<t>[\\s\\S]{{2}})", 0, _keep),
        (m["ABBREV1"], "period", _keep),
        (f"{m['ABBREV4']}\\.", 0, _keep),
        (f"{m['ABBREV4']}(?P<t>{m['SPACE']})", 0, _keep),
        (f"(?:{m['ACRO']})(?P<t>{m['SPACENL']})", 0, _keep),
        (f"{m['APOS']}[0-9][0-9](?P<t>{m['SPACENL']})", 0, _keep),
        (f"{m['FILENAME']}(?P<t>{m['SPACENL']}|[.?!,])", 0, _keep),
        (f"{m['WORD']}\\.(?P<t>{m['INSENTP']})", 0, _soft),
        (m["PHONE"], 0, lambda t: _parens(_nbsp(t))),
        (f"(?:{m['DBLQUOT']})(?P<t>[A-Za-z0-9$])", 0, _quote(True)),
        (m["DBLQUOT"], 0, _quote(False)),
        ("\x7f", 0, SKIP),
        ("<|&" + _ci("lt") + ";", 0, lambda t: "<"),
        (">|&" + _ci("gt") + ";", 0, lambda t: ">"),
        (f"{m['SMILEY']}(?P<t>[^A-Za-z0-9])", 0, _parens),
        (m["ASIANSMILEY"], 0, _parens),
        ("[{}\\[\\]()]", 0, lambda t: _BRACKETS[t]),
        ("-+", 0, lambda t: "--" if 3 <= len(t) <= 4 else t),
        (m["LDOTS"], 0, lambda t: "..."),
        ("@+|#+|_+", 0, _keep),
        ("\\*+|(?:\\\\\\*){1,3}", 0, _keep),
        (m["INSENTP"], 0, _keep),
        ("[?!]+", 0, _keep),
        ("[.\xa1\xbf\u037e\u0589\u061f\u06d4\u0700-\u0702\u07fa\u3002]", 0, _keep),
        ("=", 0, _keep),
        ("/", 0, _keep),
        (f"{m['HTHING']}\\.(?P<t>{m['INSENTP']})", 0, _soft),
        (m["HTHING"], 0, _soft),
        (f"{m['THING']}\\.(?P<t>{m['INSENTP']})", 0, _keep),
        (m["THING"], 0, _keep),
        (f"{m['THINGA']}\\.(?P<t>{m['INSENTP']})", 0, _amp),
        (m["THINGA"], 0, _amp),
        ("'(?P<t>[A-Za-z][^ \t\n\r\xa0])", 0, _quote(True)),
        (m["REDAUX"], 0, _quote(False)),
        (m["SREDAUX"], 0, _quote(False)),
        (m["QUOTES"], 0, _quote(False)),
        ("<<|>>", 0, _keep),
        (m["MISCSYMBOL"], 0, _keep),
        (f"\\x00|{spaces}|[\u200b\u200e\u200f\ufeff]", 0, SKIP),
        ("\n", 0, lambda t: NEWLINE_TOKEN),
        ("&" + _ci("nbsp") + ";", 0, SKIP),
        ("[^\n]", 0, SKIP),  # untokenizable: PTBTokenizer drops it (and logs the first)
    ]
    return [(re.compile(pattern), back, action) for pattern, back, action in table]


# Fast paths for the common case. Spaces: no rule starts with one but the one that skips
