"""Answers without a language model: quote the passage sentences that best match the question.

Sentences of the retrieved passages are ranked by how many of the question's terms they contain.
Terms are lower-cased words (minus common stop words) for alphabetic scripts and overlapping character
bigrams for CJK text, which has no spaces between words, so a Chinese question matches a Chinese
passage without a segmenter. The answer says first that no language model is configured, then quotes
the best one to three sentences, each marked `[n]` with its passage number and page.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from pdfchat.orchestrator.generation import Passage
from pdfchat.orchestrator.tokens import CJK_CLASS

MAX_SENTENCES = 3
NOTICE_EN = "No language model is configured, so this answer quotes the most relevant passages."
NOTICE_ZH = "未配置语言模型，以下回答直接引用最相关的段落。"
NOTHING_EN = "No language model is configured and no passages were found, so there is nothing to quote."
NOTHING_ZH = "未配置语言模型，也没有找到相关段落，无法引用。"

_CJK_RUN = re.compile(f"[{CJK_CLASS}]+")
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=\S)|(?<=[。！？；])|\n{2,}|\n(?=\s*[-•*\d])")
_PIECE = re.compile(f"[{CJK_CLASS}]{{1,3}}[\\s，。！？；：、“”（）]*|[^\\s{CJK_CLASS}]+\\s*|\\s+")
_STOP_WORDS = frozenset(
    {
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "can",
        "do",
        "does",
        "for",
        "from",
        "has",
        "have",
        "how",
        "in",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "that",
        "the",
        "this",
        "to",
        "was",
        "were",
        "what",
        "when",
        "where",
        "which",
        "who",
        "why",
        "will",
        "with",
        "about",
        "into",
        "than",
        "then",
        "there",
        "these",
        "those",
        "they",
        "their",
    }
)


@dataclass(frozen=True)
class RankedSentence:
    text: str
    passage_number: int
    """1-based number of the passage it comes from, as cited `[n]`."""
    page: int
    score: float


_SUFFIXES = ("ing", "ed", "es", "s")


def stem(word: str) -> str:
    """A light English stem, so "Huguenots" matches "Huguenot" and "invited" matches "invite"."""
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            break
    return word[:-1] if word.endswith("e") and len(word) > 3 else word


def terms(text: str) -> set[str]:
    """Matching terms: stemmed lower-cased words (not stop words) and CJK character bigrams (single
    characters alone)."""
    found: set[str] = set()
    for run in _CJK_RUN.findall(text):
        if len(run) == 1:
            found.add(run)
        found.update(run[i : i + 2] for i in range(len(run) - 1))
    latin = _CJK_RUN.sub(" ", text)
    found.update(stem(word) for word in (w.lower() for w in _WORD.findall(latin)) if word not in _STOP_WORDS)
    return found


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(text) if s and s.strip()]


def is_cjk(text: str) -> bool:
    """Whether CJK characters make up most of the letters of `text`."""
    cjk = sum(len(run) for run in _CJK_RUN.findall(text))
    latin = sum(len(word) for word in _WORD.findall(_CJK_RUN.sub(" ", text)))
    return cjk > 0 and cjk * 2 >= latin


def rank(question: str, passages: Sequence[Passage]) -> list[RankedSentence]:
    """Every sentence of every passage, best match first.

    The score sums the question terms a sentence contains, each weighted by how rare it is among the
    sentences (a term every sentence has tells nothing apart); ties keep retrieval order (earlier
    passages first), which is the retriever's own ranking.
    """
    wanted = terms(question)
    sentences = [
        (number, passage.page, sentence, terms(sentence))
        for number, passage in enumerate(passages, start=1)
        for sentence in split_sentences(passage.text)
    ]
    frequency: dict[str, int] = {}
    for *_, found in sentences:
        for term in wanted & found:
            frequency[term] = frequency.get(term, 0) + 1
    ranked: list[tuple[float, int, RankedSentence]] = []
    for order, (number, page, sentence, found) in enumerate(sentences):
        score = sum(math.log(1 + len(sentences) / frequency[term]) for term in wanted & found)
        ranked.append((score, order, RankedSentence(sentence, number, page, score)))
    ranked.sort(key=lambda item: (-item[0], item[1]))
    return [item[2] for item in ranked]


def best_sentences(question: str, passages: Sequence[Passage], limit: int = MAX_SENTENCES) -> list[RankedSentence]:
    """The top sentences worth quoting: those scoring at least half the best; the first sentence if none match."""
    ranked = rank(question, passages)
    if not ranked:
        return []
    top = ranked[0].score
    if top == 0:
        return ranked[:1]
    return [sentence for sentence in ranked if sentence.score * 2 >= top][:limit]


def compose_answer(question: str, passages: Sequence[Passage]) -> str:
    """The full extractive answer: the notice, then the quoted sentences with `[n]` and page markers."""
    chinese = is_cjk(question) or (not question and any(is_cjk(p.text) for p in passages))
    chosen = best_sentences(question, passages)
    if not chosen:
        return NOTHING_ZH if chinese else NOTHING_EN
    if chinese:
        quotes = "".join(f"{s.text}[{s.passage_number}]（第{s.page}页）" for s in chosen)
        return f"{NOTICE_ZH}\n\n{quotes}"
    quotes = " ".join(f"{s.text} [{s.passage_number}] (p. {s.page})" for s in chosen)
    return f"{NOTICE_EN}\n\n{quotes}"


def pieces(answer: str) -> Iterator[str]:
    """The answer in streaming pieces: a word with its trailing space, or up to three CJK characters.

    Concatenating the pieces gives the answer back exactly.
    """
    yield from _PIECE.findall(answer)
