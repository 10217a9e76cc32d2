"""The captioner (ouroboros.tasks.captioning): beam search scored as transformers' generate
scores it, a small captioner that learns, save/load, BLIP fine-tuning from a local folder,
and the checks on bad input."""

import json
import math

import numpy as np
import pytest
import torch

from ouroboros.errors import UserError
from ouroboros.tasks.beam_search import beam_search
from ouroboros.tasks.captioning import CaptionerConfig, build_vocabulary, load, train, words

NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


# -- beam search ------------------------------------------------------------------------------

EOS, BOS, A, B, C = range(5)
# next-token probabilities given the last token (a Markov chain; rows sum to 1)
TABLE = {
    BOS: {A: 0.55, B: 0.45},
    A: {EOS: 0.4, A: 0.2, B: 0.2, C: 0.2},
    B: {EOS: 0.1, C: 0.9},
    C: {EOS: 0.95, A: 0.05},
}


def _table_step(seqs: torch.Tensor) -> torch.Tensor:
    probs = torch.zeros(len(seqs), 5)
    for r, last in enumerate(seqs[:, -1].tolist()):
        for token, p in TABLE.get(last, {EOS: 1.0}).items():
            probs[r, token] = p
    return probs.log()  # log-probabilities are logits too


def _exhaustive_best(max_length: int) -> tuple[list[int], float]:
    """Every sequence the table can write, scored as generate scores finished beams:
    sum of log-probabilities / generated length (end token included)."""
    best, frontier = ([], -math.inf), [([], 0.0)]
    while frontier:
        seq, logp = frontier.pop()
        for token, p in TABLE[seq[-1] if seq else BOS].items():
            new, total = seq + [token], logp + math.log(p)
            if token == EOS or 1 + len(new) >= max_length:  # <bos> + tokens is the sequence's length
                score = total / len(new)
                best = max(best, ([t for t in new if t != EOS], score), key=lambda b: b[1])
            else:
                frontier.append((new, total))
    return best


def test_beam_search_finds_the_best_scored_caption_where_greedy_does_not():
    start = torch.full((1, 1), BOS)
    want, want_score = _exhaustive_best(max_length=6)
    assert want == [B, C]  # the hand-built case: 0.45 * 0.9 * 0.95 over 3 tokens beats A's 0.55 * 0.4 over 2
    got, score = beam_search(_table_step, start, EOS, beam=3, min_length=0, max_length=6)
    assert got == [want] and score.item() == pytest.approx(want_score, rel=1e-6)
    greedy, _ = beam_search(_table_step, start, EOS, beam=1, min_length=0, max_length=6)
    assert greedy == [[A]]  # the likelier first token, then the likeliest next: the end


def test_min_and_max_length_count_tokens_as_generate_does():
    start = torch.full((2, 1), BOS)

    def wants_to_stop(seqs):
        logits = torch.zeros(len(seqs), 5)
        logits[:, EOS] = 5.0
        return logits

    def never_stops(seqs):
        logits = torch.zeros(len(seqs), 5)
        logits[:, EOS] = -5.0
        return logits

    for beam in (1, 3):
        got, _ = beam_search(wants_to_stop, start, EOS, beam=beam, min_length=5, max_length=20)
        assert [len(g) for g in got] == [4, 4]  # <bos> + 4 words: the end token may come at length 5
        got, _ = beam_search(never_stops, start, EOS, beam=beam, min_length=5, max_length=20)
        assert [len(g) for g in got] == [19, 19]  # <bos> + 19 words = 20 tokens, cut there


def test_beam_search_returns_what_transformers_generate_returns():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=12, n_positions=32, n_embd=16, n_layer=2, n_head=2,
                                     initializer_range=0.5, bos_token_id=1, eos_token_id=4, pad_token_id=0)
    model = transformers.GPT2LMHeadModel(config).eval()
    start = torch.arange(1, 12)[:, None]  # eleven one-token prompts, eleven different searches
    eos = 4

    def step(seqs):
        return model(seqs, use_cache=False).logits[:, -1]

    lengths, results = set(), {}
    for beam, min_length, max_length in [(3, 5, 20), (3, 1, 8), (1, 1, 8)]:
        ours, _ = beam_search(step, start, eos, beam, min_length, max_length)
        ref = model.generate(start, attention_mask=torch.ones_like(start), num_beams=beam, min_length=min_length,
                             max_length=max_length, do_sample=False, eos_token_id=eos, pad_token_id=0,
                             use_cache=False).tolist()
        ref = [r[1 : r.index(eos, 1)] if eos in r[1:] else r[1:] for r in ref]
        assert ours == ref, (beam, min_length, max_length)
        lengths |= {len(o) for o in ours}
        results[beam, min_length] = ours
    assert len(lengths) >= 3  # the searches end at different lengths: some by the end token, some cut
    assert results[3, 1] != results[1, 1]  # and beam search is not greedy search here


# -- the small captioner ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digit_captions():
    """The embedded digits, each captioned by its class alone: 'the handwritten digit seven'."""
    from ouroboros.data.loaders import load_digits

    full = load_digits()
    order = np.random.default_rng(0).permutation(len(full))
    caps = [[f"the handwritten digit {NAMES[y]}"] for y in full.labels]
    return full.images, caps, order[:1200], order[1200:1500]


def test_the_small_captioner_learns_a_caption_that_is_a_function_of_the_image(digit_captions, tmp_path):
    images, caps, train_idx, test_idx = digit_captions
    config = CaptionerConfig(epochs=10, min_count=1, device="cpu")
    fitted = train(images[train_idx], [caps[i] for i in train_idx], config, seed=0)
    out = fitted.generate(images[test_idx])
    exact = np.mean([o == caps[i][0] for o, i in zip(out, test_idx)])
    assert exact >= 0.93, (exact, out[:5])  # 0.95-0.97 over seeds 0-2; a digit classifier gets about as far
    # save / load: safetensors + JSON holding the vocabulary; the same captions after
    fitted.save(tmp_path / "cap")
    assert sorted(p.name for p in (tmp_path / "cap").iterdir()) == ["captioner.json", "model.safetensors"]
    meta = json.loads((tmp_path / "cap" / "captioner.json").read_text())
    assert meta["vocab"][:4] == ["<pad>", "<bos>", "<eos>", "<unk>"] and "seven" in meta["vocab"]
    assert load(tmp_path / "cap").generate(images[test_idx[:40]]) == out[:40]


def test_training_is_seeded(digit_captions):
    images, caps, train_idx, _ = digit_captions
    idx = train_idx[:64]
    config = CaptionerConfig(epochs=1, dim=16, heads=2, layers=1, min_count=1, device="cpu")

    def weights(seed):
        model = train(images[idx], [caps[i] for i in idx], config, seed=seed).model
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    assert torch.equal(weights(3), weights(3))
    assert not torch.equal(weights(3), weights(4))


def test_vocabulary_keeps_words_seen_min_count_times():
    caps = [["A cat, a dog."], ["the cat sat"], ["cat's toy"]]
    assert words("A cat, a dog.") == ["a", "cat", "a", "dog"]
    assert build_vocabulary(caps, 2) == ["<pad>", "<bos>", "<eos>", "<unk>", "a", "cat"]
    with pytest.raises(UserError, match="empty vocabulary.*min_count"):
        build_vocabulary(caps, 5)


@pytest.mark.parametrize("change, fragment", [
    ({"arch": "vit"}, "captioner.arch"),
    ({"arch": "blip"}, "captioner.model"),
    ({"model": "some/dir"}, "only read by arch blip"),
    ({"epochs": 0}, "captioner.epochs"),
    ({"batch_size": 1}, "captioner.batch_size"),
    ({"lr": 0.0}, "captioner.lr"),
    ({"lr": "fast"}, "captioner.lr"),
    ({"beam": 0}, "captioner.beam"),
    ({"max_length": 1}, "captioner.max_length"),
    ({"min_length": 21}, "captioner.min_length"),
    ({"min_count": 0}, "captioner.min_count"),
    ({"dim": 30, "heads": 4}, "must divide"),
    ({"device": ""}, "captioner.device"),
])
def test_bad_settings_name_their_key(change, fragment):
    with pytest.raises(UserError, match=fragment.replace(".", r"\.")):
        CaptionerConfig(**change).validate()


def test_bad_training_input_is_refused():
    images = np.zeros((2, 1, 8, 8), np.uint8)
    with pytest.raises(UserError, match="image 1 has no caption"):
        train(images, [["a b c d"], []], CaptionerConfig(min_count=1))
    with pytest.raises(UserError, match="2 images but 1 caption lists"):
        train(images, [["a b c d"]], CaptionerConfig(min_count=1))
    with pytest.raises(UserError, match="uint8 images"):
        train(images.astype(float), [["a"], ["b"]], CaptionerConfig(min_count=1))


# -- BLIP from a local folder ---------------------------------------------------------------------

TINY_WORDS = ["the", "handwritten", "digit", *NAMES]


@pytest.fixture(scope="module")
def blip_folder(tmp_path_factory):
    """A tiny randomly initialised BLIP captioner and its processor, saved as a checkpoint."""
    transformers = pytest.importorskip("transformers")
    folder = tmp_path_factory.mktemp("blip") / "tiny-blip"
    vocab_file = folder.parent / "vocab.txt"
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", *TINY_WORDS]
    vocab_file.write_text("\n".join(vocab) + "\n")
    tokenizer = transformers.BertTokenizer(str(vocab_file), bos_token="[DEC]")
    processor = transformers.BlipProcessor(
        image_processor=transformers.BlipImageProcessor(size={"height": 16, "width": 16}), tokenizer=tokenizer)
    text = dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                num_attention_heads=2, max_position_embeddings=32, bos_token_id=5, pad_token_id=0, sep_token_id=3)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=16,
                  patch_size=8)
    torch.manual_seed(0)
    model = transformers.BlipForConditionalGeneration(
        transformers.BlipConfig(text_config=text, vision_config=vision, projection_dim=32))
    model.save_pretrained(folder, safe_serialization=True)
    processor.save_pretrained(folder)
    return folder


def test_blip_fine_tunes_from_a_local_folder_and_generates(blip_folder, digit_captions, tmp_path):
    from safetensors.torch import load_file

    images, caps, train_idx, test_idx = digit_captions
    config = CaptionerConfig(arch="blip", model=str(blip_folder), epochs=1, batch_size=4, lr=1e-3, device="cpu")
    fitted = train(images[train_idx[:8]], [caps[i] for i in train_idx[:8]], config, seed=0)  # two steps
    before = load_file(blip_folder / "model.safetensors")
    after = {k: v.detach() for k, v in fitted.model.state_dict().items()}
    changed = [k for k in before if k in after and not torch.equal(before[k], after[k])]
    assert any(k.startswith("text_decoder") for k in changed) and any(k.startswith("vision_model") for k in changed)
    out = fitted.generate(images[test_idx[:3]])
    assert len(out) == 3 and all(isinstance(o, str) for o in out)
    assert all(set(o.split()) <= set(TINY_WORDS) for o in out)  # words of the vocabulary, special tokens dropped
    assert all(len(o.split()) <= 19 for o in out)  # [DEC] + at most 19 tokens

    # ten steps on one caption: the random BLIP writes it (and nothing else) for any image
    fitted = train(images[train_idx[:8]], [["the handwritten digit seven"]] * 8,
                   CaptionerConfig(arch="blip", model=str(blip_folder), epochs=10, batch_size=8, lr=1e-3,
                                   device="cpu"), seed=0)
    out = fitted.generate(images[test_idx[:3]])
    assert out == ["the handwritten digit seven"] * 3
    fitted.save(tmp_path / "cap")
    assert not list((tmp_path / "cap").rglob("*.bin")) and (tmp_path / "cap" / "blip" / "model.safetensors").exists()
    assert load(tmp_path / "cap").generate(images[test_idx[:3]]) == out


def test_blip_learns_each_caption_from_its_start_token(blip_folder):
    from ouroboros.tasks.blip import text_batch

    transformers = pytest.importorskip("transformers")
    tokenizer = transformers.BlipProcessor.from_pretrained(blip_folder, local_files_only=True).tokenizer
    batch = text_batch(tokenizer, ["the digit seven", "the handwritten digit one"], bos=5, max_length=20)
    dec, sep, pad = 5, 3, 0
    the, digit, seven = tokenizer.convert_tokens_to_ids(["the", "digit", "seven"])
    assert batch["input_ids"].tolist()[0] == [dec, the, digit, seven, sep, pad]  # [CLS] replaced by [DEC]
    assert batch["input_ids"][1, 0] == dec
    assert batch["labels"].tolist()[0] == [dec, the, digit, seven, sep, -100]  # padding is no target
    assert batch["attention_mask"].tolist() == [[1] * 5 + [0], [1] * 6]


def _not_blip(kind: str, folder, blip_folder):
    """A folder that is not a BLIP captioning checkpoint, made `kind` ways."""
    import shutil

    if kind == "missing":
        return folder / "nowhere"
    shutil.copytree(blip_folder, folder / "m")
    m = folder / "m"
    config = json.loads((m / "config.json").read_text())
    if kind == "empty":
        shutil.rmtree(m)
        m.mkdir()
    elif kind == "gpt2":
        (m / "config.json").write_text(json.dumps({**config, "model_type": "gpt2"}))
    elif kind == "vqa":
        (m / "config.json").write_text(json.dumps({**config, "architectures": ["BlipForQuestionAnswering"]}))
    elif kind == "pickled":
        (m / "model.safetensors").rename(m / "pytorch_model.bin")
    elif kind == "no processor":
        for name in ("preprocessor_config.json", "processor_config.json"):
            (m / name).unlink(missing_ok=True)
    elif kind == "no tokenizer":
        for name in ("tokenizer.json", "vocab.txt"):
            (m / name).unlink(missing_ok=True)
    elif kind == "bad json":
        (m / "config.json").write_text("{not json")
    return m


@pytest.mark.parametrize("kind, fragment", [
    ("missing", "BLIP folder not found"),
    ("empty", "is not a BLIP checkpoint (no config.json)"),
    ("gpt2", "model_type 'gpt2', not 'blip'"),
    ("vqa", "BlipForQuestionAnswering, not a BLIP captioning model"),
    ("pickled", "only pickled weights"),
    ("no processor", "no image processor"),
    ("no tokenizer", "no tokenizer"),
    ("bad json", "not valid JSON"),
])
def test_a_folder_that_is_not_a_blip_checkpoint_is_refused(kind, fragment, blip_folder, tmp_path):
    model = _not_blip(kind, tmp_path, blip_folder)
    config = CaptionerConfig(arch="blip", model=str(model))
    with pytest.raises(UserError) as err:
        config.validate()  # at config time: before anything is loaded or written
    assert fragment in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(UserError, match="captioner.model"):
        train(np.zeros((2, 1, 8, 8), np.uint8), [["a"], ["b"]], config)
