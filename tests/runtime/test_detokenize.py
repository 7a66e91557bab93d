"""Incremental detokenization: each step decodes only the tokens since the last complete character,
and the text is always exactly the whole answer decoded at once (the real Qwen tokenizer)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from vlserve.runtime.decoding import Decoder, RowState
from vlserve.runtime.local import LocalEngine
from vlserve.runtime.protocol import SamplingParams

# byte tokens (Ġ = space, Ã/Â lead bytes, ¤... continuation bytes), CJK and emoji pieces that split
# characters across tokens, special (skipped) and added tokens, and a random spread of the vocabulary
AWKWARD = ["Ġ", "Ã", "Â", "¤", "¸", "Ģ", "ä¸", "Ń", "ðŁ", "ĺ", "Ģ", "ĠðŁ", "Ĳ", "ç", "æĺ", "¯"]


def _awkward_ids(engine: LocalEngine) -> list[int]:
    vocab = engine.tokenizer.get_vocab()
    ids = [vocab[t] for t in AWKWARD if t in vocab]
    ids += engine.tokenizer.encode("中文 测试 😀 naïve — ½ 🧪🧪 ok", add_special_tokens=False)
    ids += [151643, 151644, 151655, 151657, 151658, 151667]  # specials (skipped), <tool_call>, <think>
    return ids


def test_the_engines_tokenizer_decodes_in_pieces(engine: LocalEngine) -> None:
    assert engine.byte_level  # the real Qwen tokenizer: byte-level BPE without clean-up


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_incremental_text_is_the_whole_text_at_every_step(engine: LocalEngine, data: st.DataObject) -> None:
    pool = _awkward_ids(engine)
    token = st.one_of(st.sampled_from(pool), st.integers(0, 151642))
    tokens = data.draw(st.lists(token, min_size=1, max_size=40))
    incremental = Decoder(decode=engine.detokenize, eos_token_ids=[151645], incremental=True)
    row = RowState(SamplingParams(max_tokens=1000))
    for n, t in enumerate(tokens, 1):
        incremental.advance(row, t)
        assert row.text == engine.detokenize(tokens[:n])
    assert row.settled_tokens <= len(tokens)


def test_a_long_answer_decodes_each_token_about_once(engine: LocalEngine) -> None:
    calls: list[int] = []

    def counting(ids: list[int]) -> str:
        calls.append(len(ids))
        return engine.detokenize(ids)

    tokens = engine.tokenizer.encode("A plain sentence, then 中文 and 😀, repeated. " * 20, add_special_tokens=False)
    decoder = Decoder(decode=counting, eos_token_ids=[151645], incremental=True)
    row = RowState(SamplingParams(max_tokens=10_000))
    for t in tokens:
        decoder.advance(row, t)
    assert row.text == engine.detokenize(tokens)
    assert sum(calls) < 2 * len(tokens)  # the whole answer each step would be ~len²/2
