"""Training data files → validated conversations (no pixels decoded yet).

Three shapes of record are read, from a JSON array (``.json``) or one record per line (JSONL):

* the seed's / ``qwen-vl-finetune`` records::

    {"image": "a.png" | ["a.png", "b.png"], "video": "v.mp4" | [...],
     "conversations": [{"from": "human", "value": "<image>\\nWhat colour?"}, {"from": "gpt", "value": "red"}]}

  ``<image>`` / ``<video>`` in a value mark where each medium goes, in order; without any
  placeholder all media go before the first human turn's text (the seed's plain form).
  Roles: ``human``/``user``, ``gpt``/``assistant``, and an optional leading ``system``.
* OpenAI-style ``{"messages": [{"role": "user", "content": "..." | [parts]}, ...]}`` with parts
  ``{"type": "text"}``, ``{"type": "image_url", "image_url": {"url": ...}}`` (also ``image``),
  ``{"type": "video_url", ...}`` (also ``video``).

Media are local paths (relative ones are resolved against the data file's folder, or
``media_root``), ``file://`` URLs or ``data:`` URIs; remote URLs are refused (download first).
Every problem raises :class:`DataError`, which names the record and the field.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlparse

from vlserve.errors import RequestError

__all__ = ["Conversation", "DataError", "MediaRef", "Turn", "load_records", "parse_record"]

Role = Literal["system", "user", "assistant"]
_ROLES: dict[str, Role] = {
    "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system",
}
_PLACEHOLDER = re.compile(r"<image>|<video>")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")


class DataError(RequestError):
    """A record of the training data is unusable; ``index`` is its 0-based position in the file."""

    def __init__(self, index: int, field_name: str, problem: str) -> None:
        super().__init__(f"record {index}, field {field_name}: {problem}", index=index, field=field_name)
        self.index = index
        self.field = field_name
        self.problem = problem


@dataclass(frozen=True)
class MediaRef:
    """One image or video of a record: a file, or the bytes of a ``data:`` URI."""

    kind: Literal["image", "video"]
    source: Path | bytes
    field: str  # where it came from, for error messages ("image[1]", "messages[0].content[2]")


@dataclass
class Turn:
    role: Role
    # Text and media in order: str pieces and MediaRef items.
    parts: list[str | MediaRef] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(p for p in self.parts if isinstance(p, str))


@dataclass
class Conversation:
    """One validated record: an optional system turn, then user/assistant pairs."""

    index: int
    turns: list[Turn]

    @property
    def media(self) -> list[MediaRef]:
        return [p for t in self.turns for p in t.parts if isinstance(p, MediaRef)]


def load_records(path: Path, *, max_records: int | None = None) -> list[Any]:
    """The raw records of a ``.json`` array or a JSONL file (not yet validated)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise RequestError(f"cannot read the data file {path}: {err}") from err
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            records = json.loads(text)
        except ValueError as err:
            raise RequestError(f"{path} is not a valid JSON array: {err}") from err
    else:
        records = []
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except ValueError as err:
                raise RequestError(f"{path} line {lineno} (record {len(records)}) is not valid JSON: {err}") from err
    if not records:
        raise RequestError(f"{path} holds no records")
    if max_records is not None and len(records) > max_records:
        raise RequestError(f"{path} holds {len(records)} records; the limit is {max_records} (--max-records)")
    return list(records)


def parse_record(index: int, record: Any, *, base: Path) -> Conversation:
    """Validate one raw record into a :class:`Conversation` (files are checked to exist)."""
    if not isinstance(record, dict):
        raise DataError(index, "(record)", f"expected a JSON object, got {type(record).__name__}")
    if "messages" in record:
        turns = _openai_turns(index, record["messages"], base)
    elif "conversations" in record:
        turns = _seed_turns(index, record, base)
    else:
        raise DataError(index, "(record)", "has neither 'conversations' (seed format) nor 'messages' (OpenAI format)")
    _check_order(index, turns, "messages" if "messages" in record else "conversations")
    return Conversation(index, turns)


# -- the seed / qwen-vl-finetune format ---------------------------------------------------------
def _seed_turns(index: int, record: dict[str, Any], base: Path) -> list[Turn]:
    images = _media_list(index, record, "image", base)
    videos = _media_list(index, record, "video", base)
    convs = record["conversations"]
    if not isinstance(convs, list) or not convs:
        raise DataError(index, "conversations", "must be a non-empty list of {from, value} objects")
    turns: list[Turn] = []
    placeholders = 0
    for i, item in enumerate(convs):
        where = f"conversations[{i}]"
        if not isinstance(item, dict):
            raise DataError(index, where, "must be an object with 'from' and 'value'")
        role = _ROLES.get(str(item.get("from", "")).lower())
        if role is None:
            raise DataError(index, f"{where}.from", f"unknown role {item.get('from')!r} (human, gpt or system)")
        value = item.get("value")
        if not isinstance(value, str):
            raise DataError(index, f"{where}.value", "must be a string")
        placeholders += len(_PLACEHOLDER.findall(value))
        turns.append(Turn(role, [value]))
    if placeholders:
        _place_media(index, turns, images, videos)
    else:
        first_user = next((t for t in turns if t.role == "user"), None)
        if first_user is not None:
            first_user.parts = [*images, *videos, *first_user.parts]
    return turns


def _place_media(index: int, turns: list[Turn], images: list[MediaRef], videos: list[MediaRef]) -> None:
    """Put each medium where its ``<image>``/``<video>`` placeholder is; counts must agree."""
    queues = {"<image>": list(images), "<video>": list(videos)}
    for i, turn in enumerate(turns):
        text = turn.text
        parts: list[str | MediaRef] = []
        pos = 0
        for match in _PLACEHOLDER.finditer(text):
            if turn.role != "user":
                raise DataError(index, f"conversations[{i}].value", f"{match.group()} is only allowed in human turns")
            queue = queues[match.group()]
            if not queue:
                kind = match.group()[1:-1]
                raise DataError(index, f"conversations[{i}].value",
                                f"more {match.group()} placeholders than entries in '{kind}'")
            parts += [text[pos : match.start()], queue.pop(0)]
            pos = match.end()
        parts.append(text[pos:])
        turn.parts = [p for p in parts if not (isinstance(p, str) and p == "")]
    for key, queue in queues.items():
        if queue:
            raise DataError(index, key[1:-1], f"{len(queue)} more file(s) than {key} placeholders in the text")


def _media_list(index: int, record: dict[str, Any], key: str, base: Path) -> list[MediaRef]:
    value = record.get(key)
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    kind: Literal["image", "video"] = "image" if key == "image" else "video"
    out = []
    for i, item in enumerate(items):
        where = f"{key}[{i}]" if isinstance(value, list) else key
        if not isinstance(item, str):
            raise DataError(index, where, "must be a path string")
        out.append(_media_ref(index, where, kind, item, base))
    return out


# -- the OpenAI messages format -----------------------------------------------------------------
def _openai_turns(index: int, messages: Any, base: Path) -> list[Turn]:
    if not isinstance(messages, list) or not messages:
        raise DataError(index, "messages", "must be a non-empty list of {role, content} objects")
    turns = []
    for i, msg in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise DataError(index, where, "must be an object with 'role' and 'content'")
        role = _ROLES.get(str(msg.get("role", "")).lower())
        if role is None:
            raise DataError(index, f"{where}.role", f"unknown role {msg.get('role')!r} (system, user or assistant)")
        content = msg.get("content")
        if isinstance(content, str):
            turns.append(Turn(role, [content]))
            continue
        if not isinstance(content, list):
            raise DataError(index, f"{where}.content", "must be a string or a list of parts")
        parts: list[str | MediaRef] = []
        for j, part in enumerate(content):
            pwhere = f"{where}.content[{j}]"
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text" and isinstance(part.get("text"), str):
                parts.append(part["text"])
            elif kind in ("image_url", "image", "video_url", "video"):
                media: Literal["image", "video"] = "image" if kind.startswith("image") else "video"
                ref = part.get(kind)
                url = ref.get("url") if isinstance(ref, dict) else ref
                if not isinstance(url, str):
                    raise DataError(index, pwhere, f"a {kind} part needs a path or URL in '{kind}'")
                parts.append(_media_ref(index, pwhere, media, url, base))
            else:
                raise DataError(index, pwhere, f"unsupported content part {kind!r} (text, image_url, video_url)")
        turns.append(Turn(role, parts))
    return turns


# -- shared checks -------------------------------------------------------------------------------
def _media_ref(index: int, where: str, kind: Literal["image", "video"], value: str, base: Path) -> MediaRef:
    if value.startswith("data:"):
        header, _, payload = value.partition(",")
        if ";base64" not in header:
            raise DataError(index, where, "only base64 data: URIs are supported")
        try:
            return MediaRef(kind, base64.b64decode(payload, validate=True), where)
        except (binascii.Error, ValueError) as err:
            raise DataError(index, where, f"the data: URI is not valid base64 ({err})") from err
    parsed = urlparse(value)
    if parsed.scheme in ("http", "https", "ftp", "s3", "gs"):
        raise DataError(index, where, f"remote media ({parsed.scheme}://) are not fetched during training; "
                                      "download them and use local paths")
    path = Path(unquote(parsed.path)) if parsed.scheme == "file" else Path(value).expanduser()
    if not path.is_absolute():
        path = base / path
    if not path.is_file():
        raise DataError(index, where, f"file not found: {path}")
    if kind == "image" and path.suffix.lower() in VIDEO_SUFFIXES:
        raise DataError(index, where, f"{path.name} looks like a video; put it under 'video'")
    return MediaRef(kind, path, where)


def _check_order(index: int, turns: list[Turn], key: str) -> None:
    """An optional system turn, then user and assistant alternating, ending with an assistant."""
    start = 1 if turns and turns[0].role == "system" else 0
    if any(t.role == "system" for t in turns[start:]):
        pos = next(i for i, t in enumerate(turns) if t.role == "system" and i >= start)
        raise DataError(index, f"{key}[{pos}]", "a system turn may only come first")
    body = turns[start:]
    if not body:
        raise DataError(index, key, "has no user/assistant turns")
    for i, turn in enumerate(body):
        expected = "user" if i % 2 == 0 else "assistant"
        if turn.role != expected:
            raise DataError(index, f"{key}[{start + i}]",
                            f"expected a {'human/user' if expected == 'user' else 'gpt/assistant'} turn, "
                            f"got {turn.role!r} (turns must alternate, starting with the user)")
        if turn.role == "assistant" and any(isinstance(p, MediaRef) for p in turn.parts):
            raise DataError(index, f"{key}[{start + i}]", "assistant turns cannot carry images or videos")
        if turn.role == "assistant" and not turn.text.strip():
            raise DataError(index, f"{key}[{start + i}]", "an assistant turn is empty: nothing to learn")
    if body[-1].role != "assistant":
        raise DataError(index, f"{key}[{start + len(body) - 1}]", "the conversation must end with an assistant turn")
