"""Decoding a caption token by token: beam search (and greedy search for a beam of one),
scored the way Hugging Face's ``generate`` scores it by default, so the small captioner and
a BLIP checkpoint decode alike.

The defaults of ``generate`` (transformers 4.x-5.x), which BLIP's COCO evaluation uses with
``num_beams=3, min_length=5, max_length=20``:

- Lengths count the whole sequence, prompt included (here the prompt is ``<bos>``): at
  most `max_length` tokens; the end token is forbidden while fewer than `min_length` are
  there (its log-probability set to -inf after the softmax, not renormalised).
- A finished hypothesis scores ``sum of its log-probabilities / generated ** length_penalty``
  where `generated` counts the tokens after the prompt, the end token included, and
  ``length_penalty = 1``. A hypothesis cut at `max_length` without an end token is
  finished too, scored the same way.
- Each step keeps the 2 x beam best continuations of all beams; those among the first
  `beam` that end (end token or `max_length`) join the finished pool (its best `beam`
  kept), the best `beam` that do not end run on.
- ``early_stopping=False``: an item stops taking new hypotheses once its pool is full
  and the best running beam's score, divided by its current generated length, cannot
  beat the worst finished one. The search ends when no item can improve or every
  continuation has reached `max_length`. The answer is the best finished hypothesis.
- A beam of one is greedy search (``num_beams=1``): the most likely token each step.

`tests/test_captioning.py` checks this against ``transformers``' own ``generate``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

NEG = -1.0e9  # "impossible" as transformers writes it: finite, so sums stay ordered


def _ban(log_probs: torch.Tensor, cur_len: int, eos: int, min_length: int, banned: Sequence[int]) -> torch.Tensor:
    if cur_len < min_length:
        log_probs[:, eos] = -float("inf")
    if len(banned):
        log_probs[:, list(banned)] = -float("inf")
    return log_probs


@torch.no_grad()
def greedy_search(step: Callable[[torch.Tensor], torch.Tensor], start: torch.Tensor, eos: int, min_length: int,
                  max_length: int, banned: Sequence[int] = ()) -> list[list[int]]:
    """The most likely next token each step, until the end token or `max_length`."""
    seqs, prompt = start, start.shape[1]
    done = torch.zeros(len(start), dtype=torch.bool, device=start.device)
    for cur_len in range(prompt, max_length):
        log_probs = _ban(step(seqs).float().log_softmax(-1), cur_len, eos, min_length, banned)
        token = torch.where(done, torch.full_like(done, eos, dtype=torch.long), log_probs.argmax(-1))
        seqs = torch.cat([seqs, token[:, None]], 1)
        done |= token == eos
        if done.all():
            break
    return [_strip(row[prompt:].tolist(), eos) for row in seqs]


@torch.no_grad()
def beam_search(step: Callable[[torch.Tensor], torch.Tensor], start: torch.Tensor, eos: int, beam: int = 3,
                min_length: int = 5, max_length: int = 20, length_penalty: float = 1.0,
                banned: Sequence[int] = ()) -> tuple[list[list[int]], torch.Tensor]:
    """Beam search from the prompts `start` (N x P token ids).

    `step(seqs)` takes the running sequences, ``N * beam`` rows of equal length (row r
    belongs to item ``r // beam``), and returns the next-token logits (rows x vocabulary).
    `banned` tokens are never chosen. Returns each item's best finished hypothesis (the
    tokens after the prompt, without the end token) and its score. ``beam=1``: greedy
    search, with scores of NaN.
    """
    if beam == 1:
        tokens = greedy_search(step, start, eos, min_length, max_length, banned)
        return tokens, torch.full((len(tokens),), float("nan"))
    n, prompt = start.shape
    device, k = start.device, 2 * beam
    run_seqs = start.repeat_interleave(beam, 0).view(n, beam, prompt)
    run_scores = torch.full((n, beam), NEG, device=device)
    run_scores[:, 0] = 0.0  # all beams start as the same prompt: only one may expand at first
    fin_seqs = torch.full((n, beam, max_length), eos, dtype=torch.long, device=device)
    fin_scores = torch.full((n, beam), NEG, device=device)
    fin_len = torch.zeros((n, beam), dtype=torch.long, device=device)
    fin_full = torch.zeros((n, beam), dtype=torch.bool, device=device)  # which slots hold a hypothesis
    improvable = torch.ones(n, dtype=torch.bool, device=device)
    for cur_len in range(prompt, max_length):
        # 1. every beam's continuations, scored by the sum of log-probabilities
        log_probs = _ban(step(run_seqs.view(n * beam, cur_len)).float().log_softmax(-1), cur_len, eos,
                         min_length, banned)
        vocab = log_probs.shape[-1]
        total = (run_scores[:, :, None] + log_probs.view(n, beam, vocab)).view(n, beam * vocab)
        top_scores, top_index = total.topk(k, dim=1)  # sorted, best first
        parent, token = top_index // vocab, top_index % vocab
        cand = torch.cat([run_seqs.gather(1, parent[:, :, None].expand(-1, -1, cur_len)), token[:, :, None]], 2)
        ends = (token == eos) | (cur_len + 1 >= max_length)
        # 2. the best `beam` that do not end run on
        run_scores, run_pick = (top_scores + ends.float() * NEG).topk(beam, dim=1)
        run_seqs = cand.gather(1, run_pick[:, :, None].expand(-1, -1, cur_len + 1))
        # 3. those among the first `beam` that end join the pool, length-normalised
        joins = ends & (torch.arange(k, device=device) < beam) & improvable[:, None]
        scores = torch.where(joins, top_scores / float(cur_len + 1 - prompt) ** length_penalty, NEG)
        padded = torch.cat([cand, cand.new_full((n, k, max_length - cur_len - 1), eos)], 2)
        merged = torch.cat([fin_scores, scores], 1)
        keep = torch.where(torch.cat([fin_full, joins], 1), merged, -float("inf")).topk(beam, dim=1).indices
        fin_seqs = torch.cat([fin_seqs, padded], 1).gather(1, keep[:, :, None].expand(-1, -1, max_length))
        fin_scores = merged.gather(1, keep)
        fin_len = torch.cat([fin_len, torch.full_like(token, cur_len + 1)], 1).gather(1, keep)
        fin_full = torch.cat([fin_full, joins], 1).gather(1, keep)
        # 4. stop an item once its running beams cannot beat its worst finished one
        best_running = run_scores[:, 0] / float(cur_len + 1 - prompt) ** length_penalty
        worst = torch.where(fin_full.all(1), fin_scores.min(1).values, torch.full_like(best_running, NEG))
        improvable &= best_running > worst
        if not improvable.any() or ends.all():
            break
    fin_scores = torch.where(fin_full, fin_scores, -float("inf"))
    best = fin_scores.argmax(1)
    rows = fin_seqs[torch.arange(n, device=device), best]
    lengths = fin_len[torch.arange(n, device=device), best]
    out = [_strip(row[prompt:length].tolist(), eos) for row, length in zip(rows, lengths.tolist())]
    return out, fin_scores[torch.arange(n, device=device), best].cpu()


def _strip(tokens: list[int], eos: int) -> list[int]:
    return tokens[: tokens.index(eos)] if eos in tokens else tokens
