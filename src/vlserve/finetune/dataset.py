"""A data file → validated, encoded samples; bad records either stop the run or are skipped and reported."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from vlserve.errors import RequestError, VlserveError
from vlserve.finetune.records import Conversation, DataError, load_records, parse_record
from vlserve.finetune.samples import Sample, SampleEncoder

__all__ = ["Dataset", "Skipped", "load_dataset"]

# Encoded samples are kept in memory up to this many bytes of pixel values; beyond it they are
# encoded again each time they are used (a few thousand full-size images would not fit).
CACHE_BYTES = 1 << 30


@dataclass(frozen=True)
class Skipped:
    index: int
    field: str
    problem: str


@dataclass
class Dataset:
    """The usable conversations of a file, with their lengths; samples are encoded on demand."""

    path: Path
    encoder: SampleEncoder
    conversations: list[Conversation]
    lengths: list[int]
    answer_tokens: int
    skipped: list[Skipped] = field(default_factory=list)
    _cache: dict[int, Sample] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.conversations)

    def sample(self, i: int) -> Sample:
        cached = self._cache.get(i)
        return cached if cached is not None else self.encoder.encode(self.conversations[i])


def load_dataset(path: Path, encoder: SampleEncoder, *, skip_bad: bool = False, media_root: Path | None = None,
                 max_records: int | None = None) -> Dataset:
    """Read, validate and encode every record of ``path`` once (so a bad record or an over-long
    sample is found before training starts). With ``skip_bad`` bad records are left out and listed
    in ``Dataset.skipped``; otherwise the first one raises :class:`DataError`."""
    base = media_root or path.resolve().parent
    raw = load_records(path, max_records=max_records)
    convs: list[Conversation] = []
    lengths: list[int] = []
    skipped: list[Skipped] = []
    cache: dict[int, Sample] = {}
    cached_bytes = answers = 0
    for index, record in enumerate(raw):
        try:
            conv = parse_record(index, record, base=base)
            sample = encoder.encode(conv)
        except DataError as err:
            if not skip_bad:
                raise
            skipped.append(Skipped(err.index, err.field, err.problem))
            continue
        except VlserveError as err:  # a medium the media layer refused outright
            if not skip_bad:
                raise DataError(index, "(record)", err.message) from err
            skipped.append(Skipped(index, "(record)", err.message))
            continue
        size = (sum(f.pixel_values.nbytes for f in sample.inputs.images)
                + sum(f.pixel_values.nbytes for f in sample.inputs.videos))
        if cached_bytes + size <= CACHE_BYTES:
            cache[len(convs)] = sample
            cached_bytes += size
        convs.append(conv)
        lengths.append(sample.length)
        answers += sample.answer_tokens
    if not convs:
        raise RequestError(f"{path}: none of its {len(raw)} records is usable"
                           + (f" (first problem: record {skipped[0].index}, {skipped[0].field}: {skipped[0].problem})"
                              if skipped else ""))
    return Dataset(path, encoder, convs, lengths, answers, skipped, cache)
