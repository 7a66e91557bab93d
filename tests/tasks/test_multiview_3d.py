"""multiview_3d's photo counts: the model reads at most MODEL_VIEWS photos; a refining job may send
more (structure-from-motion measures all of them), and the model reads an even spread."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from vlserve.config import Settings
from vlserve.errors import TooManyInputsError
from vlserve.schemas import InferOptions, RefineOption
from vlserve.tasks import get_task
from vlserve.tasks.base import TaskInput
from vlserve.tasks.multiview_3d import MODEL_VIEWS


def photos(n: int) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)) for _ in range(n)]


def test_without_refine_the_model_views_are_the_limit() -> None:
    task = get_task("multiview_3d").configure(InferOptions(), Settings())
    task.rules.check(images=MODEL_VIEWS, videos=0, documents=0, text="")
    with pytest.raises(TooManyInputsError):
        task.rules.check(images=MODEL_VIEWS + 1, videos=0, documents=0, text="")


def test_a_refining_job_takes_more_photos_and_the_model_reads_a_spread() -> None:
    settings = Settings.model_validate({"recon3d": {"refine": {"max_photos": 24}}})
    task = get_task("multiview_3d").configure(InferOptions(refine=RefineOption(marker_size_mm=40)), settings)
    task.rules.check(images=24, videos=0, documents=0, text="")
    with pytest.raises(TooManyInputsError):
        task.rules.check(images=25, videos=0, documents=0, text="")
    assert get_task("multiview_3d").rules.images[1] == MODEL_VIEWS  # the shared task is untouched
    shots = photos(16)
    inp = TaskInput(images=list(shots), labels=[f"v{i}" for i in range(16)])
    warnings = task.prepare(inp)
    assert len(inp.images) == len(inp.labels) == MODEL_VIEWS
    kept = [int(label[1:]) for label in inp.labels]
    assert kept == sorted(set(kept)) and kept[0] == 0 and kept[-1] >= 14  # all around, in order
    assert all(np.array_equal(np.asarray(inp.images[j]), np.asarray(shots[i])) for j, i in enumerate(kept))
    assert any(f"{MODEL_VIEWS} of the 16 photos" in w for w in warnings)


def test_tasks_listing_says_refine_runs_as_a_job() -> None:
    described = get_task("multiview_3d").describe()
    assert "jobs only" in described["options"]["refine"]
