"""JSON-schema-constrained decoding with llguidance (runs on CPU, no torch compile needed).

Each constrained request gets an :class:`llguidance.LLMatcher`; before every step we ask it which
tokens keep the output a valid prefix of some JSON document matching the schema.

A valid document must also *end* within ``max_tokens``, and a weak or random model may wander
inside an unbounded string forever. The guarantee comes from a budget invariant kept with
:class:`~vlserve.runtime.completion.Completer`, which knows the shortest valid ending (its
*completion*) of whatever has been generated:

* up front, the completion of the empty output (the smallest valid document, tokenized) must fit
  ``max_tokens``, else the request is refused with :class:`RequestError` naming the minimum;
* at every step, with ``r`` tokens left, the token the sampler chose is kept only if the
  completion after it still fits the ``r - 1`` tokens left after it. Otherwise that token is
  discarded and the request switches to *forced* mode: the tokens of the current completion
  (which fit ``r``, by the invariant one step earlier) are emitted one per step, then
  end-of-sequence.

So the output always ends as a valid document. A completion is only relied on after llguidance
accepted its tokens (on a copy of the matcher) as ending the document. Counting tokens is cheap:
a completion of ``n`` bytes takes at most ``n`` tokens, so it is tokenized only when ``n`` is
close to the budget.

Schemas the completer cannot read (keywords outside
:data:`~vlserve.runtime.completion.SUPPORTED`, such as ``pattern`` or ``format``) fall back to a
heuristic, logged as a warning and reported in the result's warnings: in the last tokens of the
budget the allowed set is narrowed, whenever the grammar leaves such a choice, to tokens that head
for the end (inside a string, tokens with a quote; outside, ``]``/``}`` or end-of-sequence, else
bare digits). It usually closes the document, but does not guarantee it.

Stop strings would cut a JSON document short, so they cannot be combined with a schema.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from vlserve.errors import RequestError
from vlserve.redact import content
from vlserve.runtime.completion import Completer, State, Unsupported

log = logging.getLogger("vlserve.runtime")

CLOSERS = set("]}")
CLOSING_MARGIN = 16
DIGITS = set("0123456789")


@dataclass(frozen=True)
class SchemaPlan:
    """What one schema compiles to, shared by all requests using it."""

    grammar: str
    minimum: int  # the fewest max_tokens that always end in a valid document
    completer: Completer | None  # None: the schema is beyond the completer, the heuristic is used
    warning: str | None = None


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
        self._plan = lru_cache(maxsize=64)(self._compile)

    def _compile(self, schema_json: str) -> SchemaPlan:
        import llguidance

        grammar = llguidance.LLMatcher.grammar_from_json_schema(
            schema_json, defaults={"whitespace_flexible": False}
        )
        is_error, messages = llguidance.LLMatcher.validate_grammar_with_warnings(grammar, self.lltok)
        if is_error:
            raise RequestError(f"the JSON schema cannot be used for constrained decoding: {messages[0]}")
        schema = json.loads(schema_json)
        try:
            completer = Completer(schema)
            smallest = completer.completion(completer.start())
            tokens = None if smallest is None else self.lltok.tokenize_bytes(smallest)
            if tokens is None or not self.ends_document(llguidance.LLMatcher(self.lltok, grammar, log_level=0), tokens):
                raise Unsupported("its smallest document is not one the grammar accepts")
        except Unsupported as err:
            warning = (f"the JSON schema uses {err}, which the output completer does not support: the answer "
                       "is closed by a heuristic and may be cut off at max_tokens")
            log.warning("%s (schema %.200s)", warning, content(schema_json))
            text = json.dumps(minimal_instance(schema), separators=(",", ":"))
            return SchemaPlan(grammar, len(self.lltok.tokenize_str(text)), None, warning)
        return SchemaPlan(grammar, max(1, len(tokens)), completer)

    def ends_document(self, matcher: Any, tokens: list[int]) -> bool:
        """Whether ``tokens`` are accepted by (a copy of) ``matcher`` and end the document there."""
        probe = matcher.deep_copy()
        return bool(probe.try_consume_tokens(tokens) == len(tokens) and probe.is_accepting())

    def check(self, schema: dict[str, Any], max_tokens: int, stop: list[str] | tuple[str, ...] = ()) -> SchemaPlan:
        """Compile ``schema`` (cached) and check that ``max_tokens`` and ``stop`` suit it."""
        if stop:
            raise RequestError("stop strings cannot be combined with a JSON schema (a stop string would cut the "
                               "JSON short): leave out 'stop' for structured output")
        try:
            # Not sort_keys: llguidance writes properties in the schema's order, which is meaningful.
            schema_json = json.dumps(schema)
        except (TypeError, ValueError) as err:
            raise RequestError(f"the JSON schema is not serialisable: {err}") from err
        plan = self._plan(schema_json)
        if plan.minimum > max_tokens:
            raise RequestError(f"max_tokens must be at least {plan.minimum} for this JSON schema's output "
                               f"(its smallest valid answer takes {plan.minimum} tokens); got {max_tokens}")
        return plan

    def matcher(self, schema: dict[str, Any], max_tokens: int) -> JsonMatcher:
        return JsonMatcher(self, self.check(schema, max_tokens))


class JsonMatcher:
    """The grammar state of one request, and its budget invariant (see the module docstring)."""

    def __init__(self, compiler: GrammarCompiler, plan: SchemaPlan) -> None:
        import llguidance

        self.compiler = compiler
        self.closing_window = plan.minimum + CLOSING_MARGIN
        self.warning = plan.warning
        self.matcher = llguidance.LLMatcher(compiler.lltok, plan.grammar, log_level=0)
        self._bitmask = np.full((1, (compiler.vocab_size + 31) // 32), -1, dtype=np.int32)
        self._completer = plan.completer
        self._state: State = plan.completer.start() if plan.completer is not None else ()
        self._lookahead: tuple[int, State] | None = None  # the state after the token just approved
        self.forced: list[int] | None = None  # forced mode: the completion's tokens still to emit
        self._in_string = False  # for the heuristic
        self._escaped = False

    def allowed(self, remaining: int) -> np.ndarray:
        """Boolean mask ``(vocab,)`` of the tokens allowed next."""
        import llguidance.numpy

        c = self.compiler
        if self.matcher.is_stopped() or self.forced == []:
            return self._only(c.eos_token_ids)
        if self.forced:
            return self._only([self.forced[0]])
        llguidance.numpy.fill_next_token_bitmask(self.matcher, self._bitmask, 0)
        bits = np.unpackbits(self._bitmask.view(np.uint8), bitorder="little")
        mask = bits[: c.vocab_size].astype(bool)
        if self._completer is None and remaining <= self.closing_window:
            preferences = [c.quote_mask] if self._in_string else [c.closer_mask, c.digit_mask]
            for preferred in preferences:
                narrowed = mask & preferred
                if narrowed.any():
                    return narrowed
        return mask

    def _only(self, ids: list[int]) -> np.ndarray:
        mask = np.zeros(self.compiler.vocab_size, dtype=bool)
        mask[ids] = True
        return mask

    def veto(self, token: int, remaining: int) -> int | None:
        """Check the sampler's ``token`` against the budget (``remaining`` tokens left, this one
        included). Returns None to keep it, or the token to emit instead: the first of the
        current completion, which starts forced mode."""
        self._lookahead = None
        if self._completer is None or self.forced is not None or token in self.compiler.eos_token_ids:
            return None
        try:
            after = self._completer.feed(self._state, self.compiler.lltok.decode_bytes([token]))
        except Unsupported:
            after = ()
        ending = self._completer.completion(after) if after else None
        if ending is not None and self._fits(ending, remaining - 1):
            self._lookahead = (token, after)
            return None
        return self._force(remaining)

    def _fits(self, ending: bytes, budget: int) -> bool:
        # A token holds at least one byte, so only an ending longer than the budget needs counting.
        return len(ending) <= budget or len(self.compiler.lltok.tokenize_bytes(ending)) <= budget

    def _force(self, remaining: int) -> int | None:
        for ending in self._completer.completions(self._state) if self._completer else []:
            tokens = self.compiler.lltok.tokenize_bytes(ending)
            if len(tokens) > remaining:
                continue  # another reading's ending of the same length may take fewer tokens
            if self.compiler.ends_document(self.matcher, tokens):
                self.forced = tokens
                return tokens[0] if tokens else self.compiler.eos_token_ids[0]
        # The completer and the grammar disagree: never expected, but never fatal either.
        self.warning = "the output completer lost track of the schema: the answer was closed by a heuristic"
        log.warning("%s (output so far: %.200r)", self.warning, content(self._state))
        self._completer = None
        return None

    def consume(self, token: int) -> None:
        if self.matcher.is_stopped():
            return
        self.matcher.consume_token(token)
        if self.forced:
            if token == self.forced[0]:
                self.forced.pop(0)
        elif self._completer is not None:
            if self._lookahead is not None and self._lookahead[0] == token:
                self._state = self._lookahead[1]
            else:
                try:
                    self._state = self._completer.feed(self._state, self.compiler.lltok.decode_bytes([token]))
                except Unsupported:
                    self._state = ()  # the next veto finds no ending and hands over to the heuristic
        self._lookahead = None
        # Track whether we are inside a JSON string, for the heuristic (escapes are well-formed).
        for char in self.compiler.lltok.decode_str([token]):
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
