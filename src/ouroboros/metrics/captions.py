"""Caption metrics equal to pycocoevalcap's: BLEU-1..4, METEOR, ROUGE-L, CIDEr-D.

Every captioning paper (Hataya et al.'s Table 2 among them) reports the COCO caption
evaluation, pycocoevalcap. These functions compute the same numbers (tested equal to
its scorers to 1e-9 on the same candidates and references) with numpy and no Java,
except METEOR, which runs pycocoevalcap's own ``meteor-1.5.jar`` (`meteor_jar`):

- ``candidates``: one caption per image, ``{image_id: caption}``;
- ``references``: the reference captions, ``{image_id: [caption, ...]}``; both have the
  same image ids;
- ``tokenize=True`` tokenises both first as pycocoevalcap does (`ptb_tokenizer`:
  PTBTokenizer, lowercased, punctuation dropped); with ``tokenize=False`` captions are
  taken as already tokenised (space-separated tokens), as pycocoevalcap's scorers take them.

`bleu` (corpus BLEU with the "closest" reference length, as pycocoevalcap's Bleu(4)),
`rouge_l` (LCS F-measure with beta 1.2, averaged over images), `cider_d` (CIDEr-D:
TF-IDF n-gram cosine with clipping and a Gaussian length penalty, sigma 6, x10; IDF
from the references being scored) and `caption_metrics` (all of them, keyed like
pycocoevalcap: ``Bleu_1`` ... ``Bleu_4``, ``METEOR``, ``ROUGE_L``, ``CIDEr``).
`not_computed` names each metric that cannot run here and why: METEOR without Java
or the jar; SPICE always (it needs Stanford CoreNLP models pycocoevalcap downloads
on first use).
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Mapping, Sequence

import numpy as np

from ouroboros.errors import UserError
from ouroboros.metrics.meteor_jar import score as meteor_score, unavailable as meteor_unavailable
from ouroboros.metrics.ptb_tokenizer import tokenize as ptb_tokenize

KEYS = ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr")
SPICE_REASON = ("SPICE is not computed: it needs the Stanford CoreNLP 3.6.0 models that pycocoevalcap's "
                "spice/get_stanford_models.py downloads on first use, and ouroboros does not run it")


def prepare(candidates: Mapping, references: Mapping, tokenize: bool = True) -> tuple[list, list, list]:
    """(image ids, candidate per image, references per image), checked and tokenised.

    The ids are the references' in their order; pycocoevalcap tokenises the references
    in one call and the candidates in another, each in that order, and so does this."""
    ids = list(references)
    if set(ids) != set(candidates) or len(ids) != len(candidates):
        missing = [i for i in ids if i not in candidates][:3]
        extra = [i for i in candidates if i not in references][:3]
        raise UserError(f"candidates and references must caption the same images; references without a "
                        f"candidate: {missing}, candidates without references: {extra}")
    if not ids:
        raise UserError("no images to score: give at least one candidate and its references")
    refs = [list(references[i]) for i in ids]
    cands = [candidates[i] for i in ids]
    if any(not r for r in refs) or not all(isinstance(c, str) for c in cands + [t for r in refs for t in r]):
        raise UserError("every image needs one candidate caption and at least one reference caption (strings)")
    if tokenize:
        flat = ptb_tokenize([t for r in refs for t in r])
        ends = np.cumsum([len(r) for r in refs]).tolist()
        refs = [flat[end - len(r):end] for end, r in zip(ends, refs)]
        cands = ptb_tokenize(cands)
    return ids, cands, refs


def _ngrams(words: Sequence[str], n: int = 4) -> dict[tuple, int]:
    counts: dict[tuple, int] = defaultdict(int)
    for k in range(1, n + 1):
        for i in range(len(words) - k + 1):
            counts[tuple(words[i:i + k])] += 1
    return counts


def bleu(candidates: Mapping, references: Mapping, tokenize: bool = True, n: int = 4) -> list[float]:
    """Corpus BLEU-1..n (Papineni et al.), pycocoevalcap's: clipped n-gram counts summed
    over images, the brevity penalty from the reference length closest to each
    candidate's (the shorter on ties), and its smoothing constants (1e-15, 1e-9)."""
    _, cands, refs = prepare(candidates, references, tokenize)
    tiny, small = 1e-15, 1e-9
    test_len, ref_len = 0, 0
    guess, correct = [0] * n, [0] * n
    for cand, rs in zip(cands, refs):
        words = cand.split()
        max_counts: dict[tuple, int] = {}
        for r in rs:
            for gram, count in _ngrams(r.split(), n).items():
                max_counts[gram] = max(max_counts.get(gram, 0), count)
        test_len += len(words)
        ref_len += min((abs(len(r.split()) - len(words)), len(r.split())) for r in rs)[1]
        for k in range(n):
            guess[k] += max(0, len(words) - k)
        for gram, count in _ngrams(words, n).items():
            correct[len(gram) - 1] += min(max_counts.get(gram, 0), count)
    scores, product = [], 1.0
    for k in range(n):
        product *= float(correct[k] + tiny) / (guess[k] + small)
        scores.append(product ** (1.0 / (k + 1)))
    ratio = (test_len + tiny) / (ref_len + small)
    if ratio < 1:
        scores = [s * math.exp(1 - 1 / ratio) for s in scores]
    return scores


def _lcs(a: list[str], b: list[str]) -> int:
    """Length of the longest common subsequence of two token lists (one row at a time)."""
    if len(a) < len(b):
        a, b = b, a
    row = [0] * (len(b) + 1)
    for x in a:
        prev_diag = 0
        for j, y in enumerate(b, 1):
            prev_diag, row[j] = row[j], prev_diag + 1 if x == y else max(row[j], row[j - 1])
    return row[-1]


def rouge_l(candidates: Mapping, references: Mapping, tokenize: bool = True, beta: float = 1.2) -> float:
    """ROUGE-L (Lin 2004) as pycocoevalcap computes it: per image the best LCS precision
    and the best LCS recall over its references into an F-measure with beta 1.2; then the
    mean over images. Tokens are split on single spaces, as there."""
    _, cands, refs = prepare(candidates, references, tokenize)
    scores = []
    for cand, rs in zip(cands, refs):
        c = cand.split(" ")
        lcs = [_lcs(r.split(" "), c) for r in rs]
        prec = max(x / float(len(c)) for x in lcs)
        rec = max(x / float(len(r.split(" "))) for x, r in zip(lcs, rs))
        scores.append(((1 + beta**2) * prec * rec) / float(rec + beta**2 * prec) if prec != 0 and rec != 0 else 0.0)
    return float(np.mean(np.array(scores)))


def cider_d(candidates: Mapping, references: Mapping, tokenize: bool = True, n: int = 4,
            sigma: float = 6.0) -> float:
    """CIDEr-D (Vedantam et al. 2015) as pycocoevalcap's Cider: 1..4-gram TF-IDF vectors,
    IDF over the references of the images scored, the candidate's weights clipped at the
    reference's, a Gaussian penalty exp(-d^2 / (2 sigma^2)) on the difference d of the
    two captions' lengths (counted in bigrams, as pycocoevalcap does: the same difference
    for any two non-empty captions), averaged over n-gram sizes and references, times 10;
    then the mean over images."""
    _, cands, refs = prepare(candidates, references, tokenize)
    cand_counts = [_ngrams(c.split(), n) for c in cands]
    ref_counts = [[_ngrams(r.split(), n) for r in rs] for rs in refs]
    doc_freq: dict[tuple, float] = defaultdict(float)
    for counts in ref_counts:
        for gram in {g for c in counts for g in c}:
            doc_freq[gram] += 1
    log_images = np.log(float(len(ref_counts)))

    def vector(counts):
        vec = [defaultdict(float) for _ in range(n)]
        norm, length = [0.0] * n, 0
        for gram, tf in counts.items():
            k = len(gram) - 1
            vec[k][gram] = float(tf) * (log_images - np.log(max(1.0, doc_freq.get(gram, 0.0))))
            norm[k] += pow(vec[k][gram], 2)
            if k == 1:
                length += tf
        return vec, [np.sqrt(x) for x in norm], length

    scores = []
    for cand, rs in zip(cand_counts, ref_counts):
        vec, norm, length = vector(cand)
        total = np.array([0.0] * n)
        for r in rs:
            vec_r, norm_r, length_r = vector(r)
            val = np.array([0.0] * n)
            for k in range(n):
                for gram in vec[k]:
                    val[k] += min(vec[k][gram], vec_r[k][gram]) * vec_r[k][gram]
                if norm[k] != 0 and norm_r[k] != 0:
                    val[k] /= norm[k] * norm_r[k]
                val[k] *= np.e ** (-(float(length - length_r) ** 2) / (2 * sigma**2))
            total += val
        scores.append(np.mean(total) / len(rs) * 10.0)
    return float(np.mean(np.array(scores)))


def meteor(candidates: Mapping, references: Mapping, tokenize: bool = True, jar: str | None = None) -> float:
    """METEOR 1.5 (Denkowski and Lavie 2014) from pycocoevalcap's meteor-1.5.jar, run as
    pycocoevalcap runs it (``-l en -norm``). Needs Java and the jar (`not_computed`)."""
    _, cands, refs = prepare(candidates, references, tokenize)
    return meteor_score(cands, refs, jar=jar)


def not_computed(jar: str | None = None) -> dict[str, str]:
    """The metrics that cannot be computed here, each with the reason (one line)."""
    out = {}
    reason = meteor_unavailable(jar)
    if reason is not None:
        out["METEOR"] = reason
    out["SPICE"] = SPICE_REASON
    return out


def caption_metrics(candidates: Mapping, references: Mapping, tokenize: bool = True,
                    jar: str | None = None) -> dict[str, float]:
    """Every metric that can run here, keyed like pycocoevalcap (`KEYS`); METEOR is left
    out where `not_computed` says why. Captions are tokenised once for all metrics."""
    ids, cands, refs = prepare(candidates, references, tokenize)
    cand_map, ref_map = dict(zip(ids, cands)), dict(zip(ids, refs))
    out = dict(zip(KEYS[:4], bleu(cand_map, ref_map, tokenize=False)))
    if meteor_unavailable(jar) is None:
        out["METEOR"] = meteor_score(cands, refs, jar=jar)
    out["ROUGE_L"] = rouge_l(cand_map, ref_map, tokenize=False)
    out["CIDEr"] = cider_d(cand_map, ref_map, tokenize=False)
    return out
