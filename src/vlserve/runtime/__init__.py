"""The model runtime: the engine protocol and its implementations.

Only the protocol is imported here; ``vlserve.runtime.local`` (torch, transformers) is imported
by whoever creates an embedded engine.
"""

from vlserve.runtime.protocol import (
    Engine,
    EngineHealth,
    GenerationRequest,
    GenerationResult,
    ImagePart,
    Message,
    SamplingParams,
    StreamEvent,
    TextDelta,
    TextPart,
    Usage,
    VideoPart,
)

__all__ = [
    "Engine",
    "EngineHealth",
    "GenerationRequest",
    "GenerationResult",
    "ImagePart",
    "Message",
    "SamplingParams",
    "StreamEvent",
    "TextDelta",
    "TextPart",
    "Usage",
    "VideoPart",
]
