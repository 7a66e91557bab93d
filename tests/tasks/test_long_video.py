"""The long-video tasks' own logic: window answers clipped to their window, windows merged in order."""

from __future__ import annotations

import json

import pytest

from vlserve.media.longvideo import LongVideoLimits, plan_sampling
from vlserve.tasks import TASKS, TaskInput, get_task
from vlserve.tasks.long_video import LongVideoTask, clock

PLAN = plan_sampling(30.0, LongVideoLimits(window_seconds=10.0, fps=1.0, max_frames=30))


def test_both_tasks_are_listed_as_video_lane_jobs() -> None:
    for name in ("video_summary", "video_search"):
        described = TASKS[name].describe()
        assert described["lane"] == "video" and described["jobs_only"] is True and described["structured"]
        assert described["inputs"]["videos"] == [1, 1]
    assert TASKS["video_search"].describe()["inputs"]["text_required"] is True
    assert "jobs_only" not in TASKS["video_qa"].describe()  # video_qa keeps its 30 s /infer policy


def test_a_window_answer_keeps_only_times_inside_its_window() -> None:
    task = get_task("video_summary")
    assert isinstance(task, LongVideoTask)
    window = PLAN.windows[1]  # 10 .. 20 s
    text = json.dumps({"summary": " a door opens ", "events": [
        {"start": 14.0, "end": 12.0, "text": "swapped"},  # either order
        {"start": 5.0, "end": 11.04, "text": "starts before"},  # cut to the window
        {"start": 19.0, "end": 40.0, "text": "ends after"},
        {"start": 21.0, "end": 25.0, "text": "outside"},  # a time the model was not shown
    ]})
    answer = task.window_answer(text, window, 10)
    assert answer.summary == "a door opens"
    assert [(e["start"], e["end"], e["text"]) for e in answer.items] == [
        (10.0, 11.0, "starts before"), (12.0, 14.0, "swapped"), (19.0, 20.0, "ends after")]
    with pytest.raises(ValueError):
        task.window_answer("not json", window, 10)


def test_windows_merge_into_a_timestamped_summary_and_sorted_events() -> None:
    task = get_task("video_summary")
    assert isinstance(task, LongVideoTask)
    parts = [task.window_answer(json.dumps({"summary": f"part {w.index}", "events": [
        {"start": w.end - 1, "end": w.end, "text": f"late {w.index}"},
        {"start": w.start, "end": w.start + 1, "text": f"early {w.index}"}]}), w, 10) for w in PLAN.windows]
    merged = task.merge(parts, PLAN, TaskInput())
    assert merged["summary"].splitlines() == [
        "[0:00:00–0:00:10] part 0", "[0:00:10–0:00:20] part 1", "[0:00:20–0:00:30] part 2"]
    starts = [e["start"] for e in merged["events"]]
    assert starts == sorted(starts) and len(starts) == 6 and merged["duration"] == 30.0
    assert [(w["start"], w["end"]) for w in merged["windows"]] == [(0.0, 10.0), (10.0, 20.0), (20.0, 30.0)]
    search = get_task("video_search")
    assert isinstance(search, LongVideoTask)
    found = search.merge([search.window_answer(json.dumps({"moments": [{"start": 25, "end": 26, "reason": "r"}]}),
                                               PLAN.windows[2], 10)], PLAN, TaskInput(text=" cat "))
    assert found["query"] == "cat" and found["moments"] == [{"start": 25.0, "end": 26.0, "reason": "r"}]


def test_clock_reads_like_a_video_player() -> None:
    assert clock(0) == "0:00:00" and clock(83.4) == "0:01:23" and clock(5000) == "1:23:20"
