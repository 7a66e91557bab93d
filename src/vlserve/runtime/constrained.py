"""JSON-schema-constrained decoding with llguidance (runs on CPU, no torch compile needed).

Each constrained request gets an :class:`llguidance.LLMatcher`; before every step we ask it which
tokens keep the output a valid prefix of some JSON document matching the schema.

A valid document must also *end* within ``max_tokens``. A trained model closes its JSON on its
own, but a weak or random one may wander inside an unbounded string forever. So in the last
tokens of the budget (as many as the schema's smallest valid document takes, plus a margin) we
narrow the allowed set, whenever the grammar leaves such a choice, to tokens that head for the
end: inside a string, tokens containing a quote (closing it); outside, tokens made only of
``]``/``}`` or end-of-sequence, else bare digits (the shortest value). The grammar still
decides everything else, so the result is always schema-valid.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from typing import Any

import numpy as np

from vlserve.errors import RequestError

CLOSERS = set("]}")
CLOSING_MARGIN = 16
DIGITS = set("0123456789")


class GrammarCompiler:
    """Per-tokenizer state shared by all constrained requests of one engine."""

    def __init__(self, hf_tokenizer: Any, vocab_size: int, eos_token_ids: list[int]) -> None:
        import llguidance.hf

        self.vocab_size = vocab_size
        self.lltok = llguidance.hf.from_tokenizer(hf_tokenizer, n_vocab=vocab_size, eos_token=eos_token_ids[0])
        self.eos_token_ids = eos_token_ids
        self.closer_mask = np.zeros(vocab_size, dtype=bool)  # only ] and } (and spaces), or EOS
        self.quote_mask = np.zeros(vocab_size, dtype=bool)  # contains a double quote
        self.digit_mask = np.zeros(vocab_size, dtype=bool)  # only digits
        ids = [i for i in hf_tokenizer.get_vocab().values() if i < vocab_size]
        for token_id, text in zip(ids, hf_tokenizer.batch_decode([[i] for i in ids]), strict=True):
            stripped = text.strip()
            if stripped and set(stripped) <= CLOSERS:
                self.closer_mask[token_id] = True
            if '"' in text:
                self.quote_mask[token_id] = True
            if text and set(text) <= DIGITS:
                self.digit_mask[token_id] = True
        self.closer_mask[eos_token_ids] = True
        self._grammar = lru_cache(maxsize=64)(self._compile)

    def _compile(self, schema_json: str) -> str:
        import llguidance

        grammar = llguidance.LLMatcher.grammar_from_json_schema(
            schema_json, defaults={"whitespace_flexible": False}
        )
        is_error, messages = llguidance.LLMatcher.validate_grammar_with_warnings(grammar, self.lltok)
        if is_error:
            raise RequestError(f"the JSON schema cannot be used for constrained decoding: {messages[0]}")
        return grammar

    def check(self, schema: dict[str, Any], max_tokens: int) -> tuple[str, int]:
        """Compile ``schema`` (cached) and check the budget; returns ``(grammar, closing_window)``."""
        try:
            schema_json = json.dumps(schema, sort_keys=True)
        except (TypeError, ValueError) as err:
            raise RequestError(f"the JSON schema is not serialisable: {err}") from err
        grammar = self._grammar(schema_json)
        needed = self._minimal_tokens(schema_json)
        if needed > max_tokens:
            raise RequestError(f"max_tokens={max_tokens} is too small for the JSON schema: its smallest valid "
                               f"answer takes about {needed} tokens")
        return grammar, needed + CLOSING_MARGIN

    def matcher(self, schema: dict[str, Any], max_tokens: int) -> JsonMatcher:
        grammar, closing_window = self.check(schema, max_tokens)
        return JsonMatcher(self, grammar, closing_window=closing_window)

    @lru_cache(maxsize=64)  # noqa: B019 - one compiler per engine, kept for the engine's life
    def _minimal_tokens(self, schema_json: str) -> int:
        text = json.dumps(minimal_instance(json.loads(schema_json)), separators=(",", ":"))
        return len(self.lltok.tokenize_str(text))


class JsonMatcher:
    """The grammar state of one request."""

    def __init__(self, compiler: GrammarCompiler, grammar: str, closing_window: int) -> None:
        import llguidance

        self.compiler = compiler
        self.closing_window = closing_window
        self.matcher = llguidance.LLMatcher(compiler.lltok, grammar, log_level=0)
        self._bitmask = np.full((1, (compiler.vocab_size + 31) // 32), -1, dtype=np.int32)
        self._in_string = False
        self._escaped = False

    def allowed(self, remaining: int) -> np.ndarray:
        """Boolean mask ``(vocab,)`` of the tokens allowed next."""
        import llguidance.numpy

        if self.matcher.is_stopped():
            mask = np.zeros(self.compiler.vocab_size, dtype=bool)
            mask[self.compiler.eos_token_ids] = True
            return mask
        llguidance.numpy.fill_next_token_bitmask(self.matcher, self._bitmask, 0)
        bits = np.unpackbits(self._bitmask.view(np.uint8), bitorder="little")
        mask = bits[: self.compiler.vocab_size].astype(bool)
        if remaining <= self.closing_window:
            c = self.compiler
            preferences = [c.quote_mask] if self._in_string else [c.closer_mask, c.digit_mask]
            for preferred in preferences:
                narrowed = mask & preferred
                if narrowed.any():
                    return narrowed
        return mask

    def consume(self, token_id: int) -> None:
        if self.matcher.is_stopped():
            return
        self.matcher.consume_token(token_id)
        # Track whether we are inside a JSON string (the grammar guarantees well-formed escapes).
        for char in self.compiler.lltok.decode_str([token_id]):
            if self._escaped:
                self._escaped = False
            elif self._in_string and char == "\\":
                self._escaped = True
            elif char == '"':
                self._in_string = not self._in_string

    @property
    def error(self) -> str | None:
        return self.matcher.get_error() if self.matcher.is_error() else None


def minimal_instance(schema: dict[str, Any], defs: dict[str, Any] | None = None) -> Any:
    """A smallest valid instance of ``schema`` (required properties only, fewest items)."""
    defs = defs if defs is not None else {**schema.get("$defs", {}), **schema.get("definitions", {})}
    if "$ref" in schema:
        return minimal_instance(defs.get(schema["$ref"].rsplit("/", 1)[-1], {}), defs)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return min(schema["enum"], key=lambda v: len(json.dumps(v)))
    for key in ("anyOf", "oneOf"):
        if key in schema:
            options = [minimal_instance(option, defs) for option in schema[key]]
            return min(options, key=lambda v: len(json.dumps(v)))
    if "allOf" in schema:
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            merged.update(part)
        return minimal_instance(merged, defs)
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = "null" if "null" in kind else kind[0]
    if kind == "object":
        props = schema.get("properties", {})
        return {name: minimal_instance(props.get(name, {}), defs) for name in schema.get("required", [])}
    if kind == "array":
        return [minimal_instance(schema.get("items", {}), defs) for _ in range(schema.get("minItems", 0))]
    if kind == "string":
        return "a" * schema.get("minLength", 0)
    if kind in ("number", "integer"):
        low = schema.get("minimum", schema.get("exclusiveMinimum", -math.inf))
        high = schema.get("maximum", schema.get("exclusiveMaximum", math.inf))
        return 0 if low <= 0 <= high else (low if low > 0 else high)
    if kind == "boolean":
        return False
    return None
