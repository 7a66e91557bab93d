"""Conversations → token ids, labels and vision features, exactly as serving would prepare them.

The text goes through the checkpoint's own chat template and the runtime's placeholder expansion
(:mod:`vlserve.runtime.prompt`), and media through :mod:`vlserve.media` with the serving
:class:`~vlserve.media.VisionSettings`, so a trained model sees at serving time the very pixels and
tokens it was trained on. The prompt of an answer (everything up to ``<|im_start|>assistant\\n``)
tokenizes to the same ids the engine builds for that prompt; tests check this.

Only assistant text and the end-of-turn token closing it carry loss (``labels``); the system
prompt, user turns, the template's role headers and every vision token are masked with ``-100``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from vlserve.errors import IncompatibleModelError, VlserveError
from vlserve.finetune.records import Conversation, DataError, MediaRef
from vlserve.media import ImageFeatures, VideoFeatures, VisionSettings, load_image, load_video, preprocess_image
from vlserve.runtime.prompt import IMAGE_PAD, VIDEO_PAD, ModelInputs, expand_placeholders, template_messages
from vlserve.runtime.protocol import ImagePart, Message, Part, TextPart, VideoPart

__all__ = ["IGNORE", "Sample", "SampleEncoder", "to_messages"]

IGNORE = -100  # the label of a position that carries no loss (torch's cross-entropy ignore_index)


@dataclass
class Sample:
    """One training conversation, ready to collate. ``labels[i]`` is ``input_ids[i]`` where the
    token belongs to an answer and ``IGNORE`` elsewhere."""

    index: int
    inputs: ModelInputs
    labels: list[int]

    @property
    def length(self) -> int:
        return len(self.inputs.input_ids)

    @property
    def answer_tokens(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE)


def to_messages(conv: Conversation, vision: VisionSettings, *, upto: int | None = None) -> list[Message]:
    """The runtime's messages for ``conv.turns[:upto]``; images are decoded here (as the server
    decodes uploads), videos stay files or bytes for :func:`~vlserve.media.load_video`."""
    out = []
    for turn in conv.turns[:upto]:
        parts: list[Part] = []
        for piece in turn.parts:
            if isinstance(piece, str):
                parts.append(TextPart(piece))
            elif piece.kind == "image":
                parts.append(ImagePart(_load_image(conv.index, piece, vision)))
            else:
                parts.append(VideoPart(piece.source if isinstance(piece.source, bytes) else str(piece.source)))
        out.append(Message(turn.role, parts))
    return out


def _load_image(index: int, ref: MediaRef, vision: VisionSettings) -> Any:
    try:
        return load_image(ref.source, vision)
    except VlserveError as err:
        raise DataError(index, ref.field, err.message) from err


class SampleEncoder:
    """Turns conversations into :class:`Sample` with one model's tokenizer and media settings."""

    def __init__(self, tokenizer: Any, vision: VisionSettings, *, image_token_id: int, video_token_id: int,
                 end_tokens: list[str], max_length: int) -> None:
        self.tokenizer = tokenizer
        self.vision = vision
        self.image_token_id = image_token_id
        self.video_token_id = video_token_id
        self.end_tokens = [t for t in end_tokens if t]
        self.max_length = max_length

    @classmethod
    def for_model(cls, model: Any, tokenizer: Any, vision: VisionSettings, *, max_length: int) -> SampleEncoder:
        ids = model.generation_config.eos_token_id
        ids = [ids] if isinstance(ids, int) else list(ids or [])
        if tokenizer.eos_token_id is not None:
            ids.append(tokenizer.eos_token_id)
        return cls(tokenizer, vision, image_token_id=model.config.image_token_id,
                   video_token_id=model.config.video_token_id,
                   end_tokens=[str(t) for t in tokenizer.convert_ids_to_tokens(ids)], max_length=max_length)

    # -- rendering (the engine renders with add_generation_prompt=True; see LocalEngine._render) --
    def render(self, messages: list[Message], *, generation_prompt: bool) -> str:
        text = self.tokenizer.apply_chat_template(
            template_messages(messages), tokenize=False, add_generation_prompt=generation_prompt
        )
        return str(text)

    def encode(self, conv: Conversation) -> Sample:
        """Render, expand, tokenize and label one conversation; raises :class:`DataError`."""
        messages = to_messages(conv, self.vision)
        images, videos = self._features(conv, messages)
        full = self.render(messages, generation_prompt=False)
        spans = self._answer_spans(messages, full)
        expanded, expanded_spans = self._expand(full, spans, images, videos)
        enc = self.tokenizer(expanded, add_special_tokens=False, return_offsets_mapping=True)
        ids: list[int] = list(enc["input_ids"])
        if len(ids) > self.max_length:
            raise DataError(conv.index, "(record)",
                            f"is {len(ids)} tokens long with its media; the limit is {self.max_length} "
                            "(--max-length; fewer or smaller images also help: limits.max_pixels)")
        labels = [IGNORE] * len(ids)
        for start, end in expanded_spans:
            for i, (s, e) in enumerate(enc["offset_mapping"]):
                if s < start < e:
                    raise IncompatibleModelError(
                        "the tokenizer merges the assistant header and the answer into one token, so the "
                        "served prompt would differ from the trained one"
                    )
                if e > s and s >= start and e <= end:
                    labels[i] = ids[i]
        arr = np.asarray(ids)
        types = np.where(arr == self.image_token_id, 1, np.where(arr == self.video_token_id, 2, 0))
        return Sample(conv.index, ModelInputs(ids, types.tolist(), images, videos, expanded), labels)

    def _features(self, conv: Conversation, messages: list[Message]) -> tuple[list[ImageFeatures],
                                                                                list[VideoFeatures]]:
        refs = iter(conv.media)
        images: list[ImageFeatures] = []
        videos: list[VideoFeatures] = []
        for message in messages:
            for part in message.parts:
                if isinstance(part, TextPart):
                    continue
                ref = next(refs)
                try:
                    if isinstance(part, ImagePart):
                        images.append(preprocess_image(part.image, self.vision))  # type: ignore[arg-type]
                    elif isinstance(part, VideoPart):
                        videos.append(load_video(part.video, self.vision))  # type: ignore[arg-type]
                except VlserveError as err:
                    raise DataError(conv.index, ref.field, err.message) from err
        return images, videos

    def _answer_spans(self, messages: list[Message], full: str) -> list[tuple[int, int]]:
        """Character spans of each answer (its text and end-of-turn token) in the rendered text."""
        spans = []
        for i, message in enumerate(messages):
            if message.role != "assistant":
                continue
            before = self.render(messages[:i], generation_prompt=True)
            upto = self.render(messages[: i + 1], generation_prompt=False)
            if not (upto.startswith(before) and full.startswith(upto)):
                raise IncompatibleModelError(
                    "the checkpoint's chat template renders earlier turns differently once later turns "
                    "follow, so answers cannot be located; use a template without that behaviour"
                )
            spans.append((len(before), self._answer_end(upto, len(before))))
        return spans

    def _answer_end(self, text: str, start: int) -> int:
        ends = [(text.find(tok, start), tok) for tok in self.end_tokens]
        found = [(pos + len(tok)) for pos, tok in ends if pos >= 0]
        return min(found) if found else len(text.rstrip())

    def _expand(self, full: str, spans: list[tuple[int, int]], images: list[ImageFeatures],
                videos: list[VideoFeatures]) -> tuple[str, list[tuple[int, int]]]:
        """``expand_placeholders`` piece by piece, keeping track of where the answers land."""
        pieces: list[str] = []
        out_spans = []
        image_pos = video_pos = cursor = length = 0

        def expand(text: str) -> str:
            nonlocal image_pos, video_pos
            n_img, n_vid = text.count(IMAGE_PAD), text.count(VIDEO_PAD)
            out = expand_placeholders(text, images[image_pos : image_pos + n_img],
                                      videos[video_pos : video_pos + n_vid])
            image_pos += n_img
            video_pos += n_vid
            return out

        for start, end in spans:
            head = expand(full[cursor:start])
            pieces += [head, full[start:end]]
            out_spans.append((length + len(head), length + len(head) + end - start))
            length += len(head) + end - start
            cursor = end
        pieces.append(expand(full[cursor:]))
        return "".join(pieces), out_spans

