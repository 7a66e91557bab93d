"""Wire models of the OpenAI-compatible Chat Completions API (requests only; answers are built
by :mod:`vlserve.api.openai_compat`).

Fields that the API defines but we do not implement are refused by name rather than silently
ignored; fields that change nothing for a self-hosted server (``user``, ``store``, ``metadata``,
``service_tier``, ``parallel_tool_calls``) are accepted.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from vlserve import sampling
from vlserve.schemas import field_range


class URLRef(BaseModel):
    url: str
    detail: Literal["auto", "low", "high"] | None = None


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["text", "image_url", "video_url"]
    text: str | None = None
    image_url: URLRef | None = None
    video_url: URLRef | None = None


class FunctionCall(BaseModel):
    name: str
    arguments: str = Field(description="The arguments as a JSON object, serialised.")


class ToolCallIn(BaseModel):
    id: str = ""
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCallIn] | None = None
    tool_call_id: str | None = None


class FunctionDefinition(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    description: str = ""
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(BaseModel):
    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(BaseModel):
    name: str


class NamedToolChoice(BaseModel):
    type: Literal["function"]
    function: NamedFunction


class JSONSchemaFormat(BaseModel):
    name: str = "response"
    description: str | None = None
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema")
    strict: bool | None = None


class ResponseFormat(BaseModel):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaFormat | None = None


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, **field_range(sampling.TEMPERATURE))
    top_p: float | None = Field(None, **field_range(sampling.TOP_P))
    presence_penalty: float | None = Field(None, **field_range(sampling.PRESENCE_PENALTY))
    frequency_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    seed: int | None = Field(None, **field_range(sampling.SEED))
    stop: str | list[str] | None = None
    n: int = Field(1, ge=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    response_format: ResponseFormat | None = None
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    logprobs: bool = False
    top_logprobs: int | None = Field(None, **field_range(sampling.TOP_LOGPROBS))
    # vLLM's extensions, which clients of self-hosted servers send.
    top_k: int | None = Field(None, **field_range(sampling.TOP_K))
    repetition_penalty: float | None = Field(None, **field_range(sampling.REPETITION_PENALTY))
    # Accepted, and meaningless for a self-hosted server.
    user: str | None = None
    store: bool | None = None
    metadata: dict[str, str] | None = None
    service_tier: str | None = None
