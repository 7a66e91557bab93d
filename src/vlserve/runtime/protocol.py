"""The engine contract: what everything above the runtime may rely on.

An engine turns a :class:`GenerationRequest` (chat messages whose parts may be images and videos)
into text. The embedded engine runs the model in-process with ``transformers``; remote engines
speak to vLLM or SGLang. Callers see only this module, never torch.
"""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

    from vlserve.media import ImageFeatures, VideoFeatures

Role = Literal["system", "user", "assistant", "tool"]
FinishReason = Literal["stop", "length", "cancelled"]


@dataclass
class TextPart:
    text: str


@dataclass
class ImagePart:
    """An image: already decoded (PIL) or already preprocessed for the model. ``encoding`` asks an
    engine that re-encodes images (a remote one) for ``"jpeg"`` or ``"png"`` (None: its own setting);
    frames of a video, already lossy, travel as JPEG."""

    image: Image.Image | ImageFeatures
    encoding: Literal["png", "jpeg"] | None = None


@dataclass
class VideoPart:
    """A video: a file path, encoded bytes, a list of frames, or already preprocessed features."""

    video: str | os.PathLike[str] | bytes | Sequence[Image.Image | np.ndarray] | VideoFeatures
    fps: float | None = None
    start: float | None = None
    end: float | None = None


Part = TextPart | ImagePart | VideoPart


@dataclass
class ToolCall:
    """A function call the assistant made (in a conversation's history, or in an answer)."""

    name: str
    arguments: dict[str, Any]
    id: str = ""


@dataclass
class Message:
    role: Role
    content: str | list[Part]
    tool_calls: list[ToolCall] = field(default_factory=list)  # assistant turns that called tools

    @property
    def parts(self) -> list[Part]:
        return [TextPart(self.content)] if isinstance(self.content, str) else self.content


@dataclass
class SamplingParams:
    """Decoding settings. ``temperature == 0`` means greedy decoding."""

    max_tokens: int = 512
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    json_schema: dict[str, Any] | None = None
    logprobs: int | None = None  # None: off; k: each token's log-probability and its k best alternatives

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0


@dataclass
class GenerationRequest:
    """``tools`` (JSON-schema function definitions) are shown to the model the way its chat template
    shows them; ``prefill`` is text the assistant's answer starts with (not part of the output)."""

    messages: list[Message]
    params: SamplingParams = field(default_factory=SamplingParams)
    request_id: str = ""
    tools: list[dict[str, Any]] = field(default_factory=list)
    prefill: str = ""
    # Engines that cache media or vision outputs keep entries of different scopes apart (the
    # service puts the API key here under cache.scope = "key"); "" is the shared scope, None: keep
    # nothing of this request (privacy mode).
    cache_scope: str | None = ""
    # False: the caller reads only the finished answer (``/infer``, jobs), so an engine may deliver
    # it whole (a remote one asks its upstream for one JSON answer instead of a token stream).
    incremental: bool = True


@dataclass
class TokenLogprob:
    """One generated token: its text, its log-probability under the model's own distribution
    (before temperature, penalties and grammar), and the ``top`` alternatives as ``(text, logprob)``."""

    token: str
    logprob: float
    top: list[tuple[str, float]] = field(default_factory=list)


@dataclass
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    image_tokens: int = 0
    video_tokens: int = 0


@dataclass
class GenerationResult:
    """The outcome of one request.

    ``confidence`` is the geometric mean of the probabilities the sampler gave the generated tokens
    (``exp(mean(log p))``), in ``(0, 1]``. ``activated_experts`` (MoE models only) is the number
    of distinct experts that this request's tokens were routed to, averaged over the MoE layers and
    rounded: always within ``[1, num_experts]``.
    """

    text: str
    token_ids: list[int]
    finish_reason: FinishReason
    usage: Usage
    confidence: float | None
    activated_experts: int | None = None
    experts_per_layer: list[int] | None = None
    model: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    logprobs: list[TokenLogprob] | None = None  # when the request asked for them


@dataclass
class TextDelta:
    """A piece of the answer as it is generated; ``index`` counts deltas from 0. ``logprobs``
    (when asked for) covers the tokens generated since the previous delta."""

    text: str
    index: int
    logprobs: list[TokenLogprob] | None = None


StreamEvent = TextDelta | GenerationResult


@dataclass
class EngineHealth:
    ready: bool
    model: str
    detail: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Engine(Protocol):
    """What the task and HTTP layers need from a model runtime."""

    model_name: str
    # Optional capability (read with :func:`accepts_decoded_video`): False for engines that can only
    # send encoded media on, so callers show them a long video's frames as timestamped images.
    # accepts_decoded_video: bool

    async def generate(self, request: GenerationRequest) -> GenerationResult: ...

    def stream(self, request: GenerationRequest) -> AsyncGenerator[StreamEvent, None]:
        """Yield :class:`TextDelta` pieces, then exactly one final :class:`GenerationResult`."""
        ...

    async def health(self) -> EngineHealth: ...

    def close(self) -> None:
        """Release threads and connections; requests still in flight fail with an engine error."""
        ...


def accepts_decoded_video(engine: Engine) -> bool:
    """Whether ``engine`` takes a :class:`VideoPart` of already decoded frames or preprocessed
    ``VideoFeatures`` (the embedded engine does; one behind an HTTP protocol, which carries encoded
    files only, does not). An engine says so with a class attribute ``accepts_decoded_video``;
    one without it is taken to run the model in-process, as the protocol's original engines do."""
    return bool(getattr(engine, "accepts_decoded_video", True))


def max_images(engine: Engine) -> int | None:
    """The most images ``engine`` takes in one request (an upstream's own limit, declared with an
    attribute ``max_images``), or None when it sets none of its own."""
    value = getattr(engine, "max_images", None)
    return int(value) if value is not None else None


@runtime_checkable
class BatchStats(Protocol):
    """Engines that batch requests report their batch for ``/metrics``."""

    def batch_stats(self) -> dict[str, int]:
        """``rows`` decoding now, ``waiting`` to join, and the running totals ``steps`` and
        ``joined_running`` (requests that joined a batch already generating)."""
        ...
