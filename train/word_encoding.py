"""Words -> sub-words and back, the one place training and extraction agree on where a word's label sits.

The tagger labels *words* (the sentence's own tokens); the encoder reads sub-words. A word's label
sits at the first sub-word that covers it (:attr:`WordEncoding.starts`), the others are ignored
by the loss, as in BERT token classification.

**WordPiece** (BERT, mBERT): the words are encoded one by one (``is_split_into_words=True``); no
sub-word ever covers two words.

**SentencePiece** (XLM-R, multilingual-e5): encoding words one by one is what the tokenizer was not
trained on. Every word starts with ``▁``, and for a word it has no ``▁word`` piece for (every CJK
character, a comma) ``▁`` is a piece of its own: ``北京是`` split into characters becomes
``▁ 北 ▁ 京 ▁ 是``, each word's first sub-word the same empty ``▁`` and the sequence twice the
text's own ``▁ 北京 是``. So the words are joined back into running text (a space between two
words unless both sides are in a script written without spaces: Han, kana, Thai, Lao, Myanmar,
CJK punctuation), encoded with offsets, pieces that cover no character of a word (a bare ``▁``)
are dropped, and each word points to the first piece covering it. One piece may cover several
words (``北京`` over ``北`` and ``京``): they share it, the first word's label is trained, and at
extraction the others continue the first one's chunk (:func:`share_pieces`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

_UNSPACED = re.compile(
    "[\u0e00-\u0e7f\u0e80-\u0eff\u1000-\u109f\u3000-\u303f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff"
    "\uf900-\ufaff\uff00-\uffef\U00020000-\U0002fa1f]"
)
"""Scripts and punctuation written without spaces between words (Thai, Lao, Myanmar, CJK). Not
:data:`openie4pp.text.NO_SPACE_SCRIPTS` on purpose: this set decides the sub-word ids a trained
model was fed, at training and at extraction alike, so widening it (Khmer, CJK radicals, bopomofo)
would change what models trained before read; it changes only with a new encoding version."""


@dataclass(frozen=True)
class WordEncoding:
    """One sentence's sub-word ids; per sub-word the (first) word it covers, ``None`` for specials;
    per word the position of the first sub-word covering it, ``-1`` for none (cut away, or only
    characters the tokenizer drops)."""

    input_ids: list[int]
    word_ids: list[int | None]
    starts: list[int]


def word_starts(word_ids: Sequence[int | None], n_words: int) -> list[int]:
    """Position of each word's first sub-word, ``-1`` for a word with none."""
    starts = [-1] * n_words
    previous = None
    for position, word in enumerate(word_ids):
        if word is not None and word != previous and starts[word] < 0:
            starts[word] = position
        previous = word
    return starts


def bare_metaspace(tokenizer: Any) -> int | None:
    """The id of SentencePiece's lone word-start piece ``▁`` (XLM-R, mT5, e5...), None for WordPiece."""
    token_id = tokenizer.convert_tokens_to_ids("\u2581")
    return None if token_id is None or token_id == tokenizer.unk_token_id else int(token_id)


def joined(words: Sequence[str]) -> tuple[str, list[tuple[int, int]]]:
    """The words as running text, and each word's character span in it."""
    parts, spans, at = [], [], 0
    for index, word in enumerate(words):
        if index and not (_UNSPACED.match(words[index - 1][-1:]) and _UNSPACED.match(word[:1])):
            parts.append(" ")
            at += 1
        parts.append(word)
        spans.append((at, at + len(word)))
        at += len(word)
    return "".join(parts), spans


def encode_words(tokenizer: Any, sentences: Sequence[Sequence[str]], max_length: int) -> list[WordEncoding]:
    """Sub-word ids of pre-split sentences, at most ``max_length`` of them (specials kept)."""
    bare = bare_metaspace(tokenizer)
    if bare is None:
        encoded = tokenizer([list(words) for words in sentences], is_split_into_words=True,
                            truncation=True, max_length=max_length)
        word_ids = [encoded.word_ids(i) for i in range(len(sentences))]
        return [WordEncoding(ids, words_of, word_starts(words_of, len(words)))
                for ids, words_of, words in zip(encoded["input_ids"], word_ids, sentences, strict=True)]
    texts = [joined(words) for words in sentences]
    encoded = tokenizer([text for text, _ in texts], return_offsets_mapping=True,
                        return_special_tokens_mask=True, truncation=True, max_length=2 * max_length + 2)
    return [_align(ids, offsets, specials, spans, max_length, bare)
            for ids, offsets, specials, (_, spans) in zip(
                encoded["input_ids"], encoded["offset_mapping"], encoded["special_tokens_mask"], texts,
                strict=True)]


def _align(ids: list[int], offsets: list[tuple[int, int]], specials: list[int],
           spans: list[tuple[int, int]], max_length: int, bare: int) -> WordEncoding:
    kept: list[tuple[int, int | None, list[int]]] = []  # (id, first word, words covered)
    word = 0
    for token, (start, end), special in zip(ids, offsets, specials, strict=True):
        if special:
            kept.append((token, None, []))
            continue
        if token == bare:  # a bare ▁ (its offsets are those of the piece after it): dropped
            continue
        while word < len(spans) and spans[word][1] <= start:
            word += 1
        covered = [w for w in range(word, len(spans)) if spans[w][0] < end and start < spans[w][1]]
        if covered:  # a piece of no word's characters (a space) carries nothing
            kept.append((token, covered[0], covered))
    if len(kept) > max_length:
        head = next((n for n, k in enumerate(kept) if k[1] is not None), 0)
        tail = [k for k in kept[head:] if k[1] is None]
        body = [k for k in kept[head:] if k[1] is not None][: max(0, max_length - head - len(tail))]
        kept = kept[:head] + body + tail
    starts = [-1] * len(spans)
    for position, (_, _, covered) in enumerate(kept):
        for w in covered:
            if starts[w] < 0:
                starts[w] = position
    return WordEncoding([k[0] for k in kept], [k[1] for k in kept], starts)


def label_positions(starts: Sequence[int]) -> list[int]:
    """Per word, where its label is trained: its first sub-word, ``-1`` when it has none or shares
    it with the word before (the piece carries that word's label)."""
    return [s if s >= 0 and not (w and starts[w - 1] == s) else -1 for w, s in enumerate(starts)]


def share_pieces(tags: list[int], starts: Sequence[int], o_label: int) -> list[int]:
    """A word that shares its sub-word with the word before continues that word's chunk
    (``X-B/I`` -> ``X-I``; ``O`` stays ``O``). ``B`` ids are even and ``I = B + 1`` in both label sets."""
    out = list(tags)
    for w in range(1, len(out)):
        if starts[w] >= 0 and starts[w] == starts[w - 1]:
            out[w] = o_label if out[w - 1] == o_label else out[w - 1] | 1
    return out


__all__ = ["WordEncoding", "bare_metaspace", "encode_words", "joined", "label_positions", "share_pieces",
           "word_starts"]
