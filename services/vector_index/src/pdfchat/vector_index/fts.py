"""Text preparation for Postgres full-text search in English and Chinese (and other CJK scripts).

Postgres has no Chinese parser: its default parser treats a whole run of Han characters as one "word", so
`to_tsvector` on raw Chinese yields sentence-sized lexemes that no query ever matches. Instead of relying
on whitespace, text is prepared here into space-separated search tokens that Postgres only has to copy:

- Latin (and other space-delimited scripts): NFKC-normalised, lowercased words of letters and digits.
- CJK runs (Han, kana, Hangul): overlapping character bigrams, the usual dictionary-free approach
  ("向量检索" -> "向量 量检 检索"). Documents also get each character as a unigram, so that a query
  term of a single character (as in "A股") still matches.

Documents are stored as `to_tsvector('simple', prepare_document(text))` and queried with
`to_tsquery('simple', query_expression(text))`: the same tokens on both sides, OR-ed together, ranked
by `ts_rank_cd`, so more shared tokens (and closer together) rank higher.
"""

from __future__ import annotations

import re
import unicodedata

_CJK = (
    "\u3040-\u30ff"  # hiragana, katakana
    "\u3400-\u4dbf"  # CJK extension A
    "\u4e00-\u9fff"  # CJK unified ideographs
    "\uac00-\ud7af"  # hangul syllables
    "\uf900-\ufaff"  # CJK compatibility ideographs
    "\U00020000-\U0002ebef"  # CJK extensions B-F
)
# One alternative per token kind: a CJK run, or a word of letters/digits that are not CJK.
_TOKEN = re.compile(rf"(?P<cjk>[{_CJK}]+)|(?P<word>[^\W_{_CJK}]+)")

MAX_QUERY_TOKENS = 64
"""A pasted page as a query would otherwise become a tsquery of thousands of alternatives."""

_STOPWORDS = """
    a about above after again all am an and any are as at be because been before being below between both but
    by can could did do does doing down during each few for from further had has have having he her here hers
    herself him himself his how i if in into is it its itself just me more most my myself no nor not of off on
    once only or other our ours ourselves out over own same she should so some such than that the their theirs
    them themselves then there these they this those through to too under until up very was we were what when
    where which while who whom why will with would you your yours yourself yourselves s t d ll m re ve
"""
ENGLISH_STOPWORDS = frozenset(_STOPWORDS.split())
"""Words too common to say anything about relevance, and the fragments of contractions ("it's" -> "it s");
dropped from queries (documents keep them)."""


def _tokens(text: str, *, cjk_unigrams: bool) -> list[str]:
    normalised = unicodedata.normalize("NFKC", text).lower()
    tokens: list[str] = []
    for match in _TOKEN.finditer(normalised):
        word = match.group("word")
        if word is not None:
            tokens.append(word)
            continue
        run = match.group("cjk")
        if len(run) == 1:
            tokens.append(run)
            continue
        tokens.extend(run[i : i + 2] for i in range(len(run) - 1))
        if cjk_unigrams:
            tokens.extend(run)
    return tokens


def prepare_document(text: str) -> str:
    """The space-separated tokens to store for a segment's text (input of `to_tsvector('simple', ...)`)."""
    return " ".join(_tokens(text, cjk_unigrams=True))


def query_tokens(text: str) -> list[str]:
    """Distinct search tokens of a query, in order, without English stopwords, at most MAX_QUERY_TOKENS."""
    seen: dict[str, None] = {}
    for token in _tokens(text, cjk_unigrams=False):
        if token not in ENGLISH_STOPWORDS:
            seen.setdefault(token, None)
    return list(seen)[:MAX_QUERY_TOKENS]


def query_expression(text: str) -> str | None:
    """A `to_tsquery` expression matching any of the query's tokens, or None when nothing is left to search.

    Each token is written as a quoted lexeme (quotes and backslashes escaped), so no character of user
    input can act as a tsquery operator.
    """
    tokens = query_tokens(text)
    if not tokens:
        return None
    return " | ".join(_quote_lexeme(token) for token in tokens)


def _quote_lexeme(token: str) -> str:
    return "'" + token.replace("\\", "\\\\").replace("'", "''") + "'"
