"""Caption metrics against pycocoevalcap (a test-only dependency), and the caption-metrics
command. BLEU, ROUGE-L and CIDEr-D are compared on tokenised captions everywhere
pycocoevalcap is installed; METEOR and the end-to-end run (tokenising included) where
Java is too."""

import json
import os
import random
import shutil
import subprocess
import sys

import pytest

from ouroboros import cli
from ouroboros.metrics import bleu, caption_metrics, cider_d, meteor, rouge_l
from ouroboros.metrics import captions as C
from conftest import assert_user_error

needs_java = pytest.mark.skipif(shutil.which("java") is None,
                                reason="METEOR and PTBTokenizer need Java (apt-get install default-jre-headless)")
WORDS = "a an the man woman dog cat on in with riding holding red two sitting table of to is".split()


def _corpus(seed: int, n: int = 120, tokenised: bool = True):
    """Candidates and 1-6 references per image from a small vocabulary (so n-grams overlap),
    1-14 words each; untokenised ones get capitals and punctuation."""
    rng = random.Random(seed)

    def sentence():
        words = [rng.choice(WORDS) for _ in range(rng.randint(1, 14))]
        if tokenised:
            return " ".join(words)
        return " ".join(words).capitalize() + rng.choice(["", ".", " .", "!", ", too."])
    refs = {i * 7: [sentence() for _ in range(rng.randint(1, 6))] for i in range(n)}
    return {i: sentence() for i in refs}, refs


def _reference_scores(cands, refs, tokenize: bool, with_meteor: bool) -> dict:
    """pycocoevalcap's scores, called as its COCOEvalCap calls them."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    if tokenize:
        from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer
        gts = PTBTokenizer().tokenize({i: [{"caption": c} for c in refs[i]] for i in refs})
        res = PTBTokenizer().tokenize({i: [{"caption": cands[i]}] for i in refs})
    else:
        gts, res = {i: list(refs[i]) for i in refs}, {i: [cands[i]] for i in refs}
    out = dict(zip(C.KEYS[:4], Bleu(4).compute_score(gts, res, verbose=0)[0]))
    out["ROUGE_L"] = Rouge().compute_score(gts, res)[0]
    out["CIDEr"] = Cider().compute_score(gts, res)[0]
    if with_meteor:
        from pycocoevalcap.meteor.meteor import Meteor
        out["METEOR"] = Meteor().compute_score(gts, res)[0]
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_bleu_rouge_cider_equal_pycocoevalcaps(seed):
    pytest.importorskip("pycocoevalcap")
    cands, refs = _corpus(seed)
    cands[0] = refs[0][0]  # a perfect candidate, and a one-word one
    cands[7] = "dog"
    for i in list(cands)[1::2]:  # short candidates: BLEU's brevity penalty and its choice of reference length count
        cands[i] = " ".join(cands[i].split()[:2])
    expected = _reference_scores(cands, refs, tokenize=False, with_meteor=False)
    got = dict(zip(C.KEYS[:4], bleu(cands, refs, tokenize=False)))
    got.update(ROUGE_L=rouge_l(cands, refs, tokenize=False), CIDEr=cider_d(cands, refs, tokenize=False))
    assert got.keys() == expected.keys()
    for key in got:
        assert got[key] == pytest.approx(expected[key], abs=1e-9, rel=0), key
    assert 0.05 < got["Bleu_1"] < 1 and got["CIDEr"] > 0.05  # not a degenerate corpus
    test_len = sum(len(c.split()) for c in cands.values())
    assert test_len < sum(min(len(r.split()) for r in refs[i]) for i in refs) * 1.5  # the penalty applies


def test_scores_see_a_better_candidate():
    """Without pycocoevalcap: each metric is higher for candidates that are references."""
    cands, refs = _corpus(2, tokenised=False)
    exact = {i: refs[i][0] for i in refs}
    for metric in (lambda c: bleu(c, refs)[3], lambda c: rouge_l(c, refs), lambda c: cider_d(c, refs)):
        assert metric(exact) > metric(cands) + 0.2


# pycocoevalcap's Meteor() on _corpus(3, n=60, tokenised=False), PTBTokenizer-tokenised (its
# COCOEvalCap's steps; _reference_scores(..., with_meteor=True) gives it). Pinned, not run
# here: each METEOR start loads its paraphrase table, ~18 s of CPU, and ours starts one.
METEOR_OF_CORPUS_3 = 0.17901018560788243


@needs_java
def test_all_metrics_equal_cocoevalcaps_from_raw_captions():
    """Tokenising included, METEOR through the jar: pycocoevalcap's COCOEvalCap numbers."""
    pytest.importorskip("pycocoevalcap")
    cands, refs = _corpus(3, n=60, tokenised=False)
    expected = _reference_scores(cands, refs, tokenize=True, with_meteor=False)
    expected["METEOR"] = METEOR_OF_CORPUS_3
    got = caption_metrics(cands, refs)
    assert list(got) == list(C.KEYS)
    for key in C.KEYS:
        assert got[key] == pytest.approx(expected[key], abs=1e-9, rel=0), key
    assert meteor(cands, refs) == got["METEOR"]  # the kept process answers again, the same


def test_without_java_meteor_is_left_out_with_one_line_why(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    cands, refs = _corpus(4, n=10)
    assert set(caption_metrics(cands, refs)) == set(C.KEYS) - {"METEOR"}
    reasons = C.not_computed()
    assert set(reasons) == {"METEOR", "SPICE"} and "Java" in reasons["METEOR"]
    assert all("\n" not in r for r in reasons.values())


def test_a_missing_jar_is_named(tmp_path):
    reasons = C.not_computed(jar=str(tmp_path / "meteor-1.5.jar"))
    assert "METEOR" in reasons and "meteor-1.5.jar" in reasons["METEOR"]


def test_candidates_and_references_must_match():
    with pytest.raises(Exception, match="same images"):
        bleu({1: "a dog"}, {2: ["a dog"]})
    with pytest.raises(Exception, match="at least one reference"):
        rouge_l({1: "a dog"}, {1: []})


# -- the command ----------------------------------------------------------------------------------

def _files(tmp_path, results, annotations):
    r, a = tmp_path / "results.json", tmp_path / "captions.json"
    r.write_text(results if isinstance(results, str) else json.dumps(results))
    a.write_text(annotations if isinstance(annotations, str) else json.dumps(annotations))
    return r, a


ANNOTATIONS = {"images": [{"id": 1}, {"id": 2}, {"id": 3}],
               "annotations": [{"image_id": 1, "caption": "A dog on a red table."},
                               {"image_id": 1, "caption": "A dog sitting on a table"},
                               {"image_id": 2, "caption": "Two cats."}, {"image_id": 3, "caption": "A man."}]}


def test_caption_metrics_command_prints_pycocoevalcap_keys(tmp_path):
    """In a real process, with Java out of reach: six metrics as JSON, METEOR's and SPICE's
    reasons on stderr; the numbers are the Python API's on the images of the results."""
    results, annotations = _files(tmp_path, [{"image_id": 2, "caption": "two cats"},
                                             {"image_id": 1, "caption": "a dog on a table"}], ANNOTATIONS)
    proc = subprocess.run([sys.executable, "-m", "ouroboros", "caption-metrics", str(results), str(annotations)],
                          capture_output=True, text=True, env=dict(os.environ, PATH="/nonexistent"), timeout=600)
    assert proc.returncode == 0, proc.stderr
    printed = json.loads(proc.stdout)
    assert list(printed) == ["Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "ROUGE_L", "CIDEr"]
    notes = proc.stderr.splitlines()
    assert len(notes) == 2 and "METEOR is not computed" in notes[0] and "SPICE is not computed" in notes[1]
    refs = {1: [c["caption"] for c in ANNOTATIONS["annotations"][:2]], 2: ["Two cats."]}
    expected = caption_metrics({1: "a dog on a table", 2: "two cats"}, refs)
    assert printed == pytest.approx({k: expected[k] for k in printed}, abs=1e-12)


@pytest.mark.parametrize("results, annotations, fragment", [
    ([{"image_id": 9, "caption": "x"}], ANNOTATIONS, "not in the annotations"),
    ('[{"image_id": 1, "caption": ', ANNOTATIONS, "not valid JSON"),
    ([{"image_id": 1, "caption": "x"}], '{"annotations": [}', "not valid JSON"),
    ([{"image_id": 1, "caption": "x"}], {"images": [{"id": 1}], "annotations": [{"image_id": 5, "caption": "y"}]},
     "match no image"),
    ([{"image_id": 1, "caption": "x"}], {"images": [{"id": 1}, {"id": 2}],
                                         "annotations": [{"image_id": 1, "caption": "y"}]}, "no caption"),
    ([{"image_id": 1, "caption": "x"}, {"image_id": 1, "caption": "z"}], ANNOTATIONS, "more than one result"),
    ({"image_id": 1, "caption": "x"}, ANNOTATIONS, "not a COCO results file"),
    ([], ANNOTATIONS, "no results"),
])
def test_bad_caption_files_are_one_error_line(tmp_path, capsys, results, annotations, fragment):
    r, a = _files(tmp_path, results, annotations)
    before = sorted(tmp_path.iterdir())
    code = cli.main(["caption-metrics", str(r), str(a)])
    err = capsys.readouterr()
    assert_user_error(type("P", (), {"returncode": code, "stderr": err.err})(), fragment)
    assert err.out == "" and sorted(tmp_path.iterdir()) == before
