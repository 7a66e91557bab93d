"""Data files in the three accepted shapes, and the errors bad records get (record index and field)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from PIL import Image

from vlserve.errors import RequestError
from vlserve.finetune.records import DataError, MediaRef, load_records, parse_record


@pytest.fixture
def pics(tmp_path: Path) -> Path:
    for name, colour in (("a.png", "red"), ("b.png", "blue")):
        Image.new("RGB", (40, 40), colour).save(tmp_path / name)
    (tmp_path / "clip.mp4").write_bytes(b"\x00" * 16)
    return tmp_path


def turn_shape(conv) -> list[tuple[str, list[str]]]:  # type: ignore[no-untyped-def]
    return [(t.role, [p.field if isinstance(p, MediaRef) else p for p in t.parts]) for t in conv.turns]


def test_seed_record_puts_its_images_before_the_first_question(pics: Path) -> None:
    record = {"image": ["a.png", "b.png"], "conversations": [
        {"from": "human", "value": "Compare."}, {"from": "gpt", "value": "Red vs blue."},
        {"from": "human", "value": "Which is darker?"}, {"from": "gpt", "value": "Blue."}]}
    conv = parse_record(0, record, base=pics)
    assert turn_shape(conv) == [("user", ["image[0]", "image[1]", "Compare."]), ("assistant", ["Red vs blue."]),
                                ("user", ["Which is darker?"]), ("assistant", ["Blue."])]
    assert [m.source for m in conv.media] == [pics / "a.png", pics / "b.png"]


def test_qwen_vl_finetune_placeholders_place_media_in_the_text(pics: Path) -> None:
    record = {"image": ["a.png", "b.png"], "video": "clip.mp4", "conversations": [
        {"from": "system", "value": "Be brief."},
        {"from": "human", "value": "First <image> then <video>."}, {"from": "gpt", "value": "ok"},
        {"from": "human", "value": "<image>\nAnd this?"}, {"from": "gpt", "value": "blue"}]}
    conv = parse_record(3, record, base=pics)
    assert turn_shape(conv) == [("system", ["Be brief."]), ("user", ["First ", "image[0]", " then ", "video", "."]),
                                ("assistant", ["ok"]), ("user", ["image[1]", "\nAnd this?"]), ("assistant", ["blue"])]
    assert [m.kind for m in conv.media] == ["image", "video", "image"]


def test_openai_messages_with_paths_file_urls_and_data_uris(pics: Path) -> None:
    data_uri = "data:image/png;base64," + base64.b64encode((pics / "a.png").read_bytes()).decode()
    record = {"messages": [
        {"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": f"file://{pics / 'b.png'}"}},
            {"type": "image_url", "image_url": {"url": data_uri}},
            {"type": "text", "text": "Colours?"}]},
        {"role": "assistant", "content": "blue, red"}]}
    conv = parse_record(0, record, base=pics)
    assert conv.media[0].source == pics / "b.png"
    assert conv.media[1].source == (pics / "a.png").read_bytes()
    assert conv.turns[1].text == "blue, red"


@pytest.mark.parametrize(
    ("record", "field", "problem"),
    [
        ({"image": "missing.png", "conversations": [{"from": "human", "value": "?"}, {"from": "gpt", "value": "x"}]},
         "image", "file not found"),
        ({"image": ["a.png", "gone.png"], "conversations": [{"from": "human", "value": "?"},
                                                            {"from": "gpt", "value": "x"}]},
         "image[1]", "file not found"),
        ({"conversations": [{"from": "gpt", "value": "hi"}, {"from": "human", "value": "?"}]},
         "conversations[0]", "expected a human/user turn"),
        ({"conversations": [{"from": "human", "value": "a"}, {"from": "human", "value": "b"}]},
         "conversations[1]", "expected a gpt/assistant turn"),
        ({"conversations": [{"from": "human", "value": "a"}]}, "conversations[0]", "must end with an assistant"),
        ({"conversations": [{"from": "robot", "value": "a"}]}, "conversations[0].from", "unknown role"),
        ({"image": "clip.mp4", "conversations": [{"from": "human", "value": "?"}, {"from": "gpt", "value": "x"}]},
         "image", "looks like a video"),
        ({"image": "a.png", "conversations": [{"from": "human", "value": "<image><image>"},
                                              {"from": "gpt", "value": "x"}]},
         "conversations[0].value", "more <image> placeholders"),
        ({"image": ["a.png", "b.png"], "conversations": [{"from": "human", "value": "<image>"},
                                                         {"from": "gpt", "value": "x"}]},
         "image", "1 more file(s) than <image>"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url",
                                                     "image_url": {"url": "https://example.com/a.png"}}]},
                       {"role": "assistant", "content": "x"}]},
         "messages[0].content[0]", "remote media"),
        ({"messages": [{"role": "user", "content": [{"type": "audio", "audio": "a.wav"}]},
                       {"role": "assistant", "content": "x"}]},
         "messages[0].content[0]", "unsupported content part"),
        ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "  "}]},
         "messages[1]", "empty"),
        (["not", "an", "object"], "(record)", "expected a JSON object"),
    ],
)
def test_bad_records_name_the_record_and_the_field(pics: Path, record: object, field: str, problem: str) -> None:
    with pytest.raises(DataError) as info:
        parse_record(7, record, base=pics)
    assert info.value.index == 7
    assert info.value.field == field
    assert problem in info.value.problem
    assert info.value.message.startswith(f"record 7, field {field}: ")
    assert info.value.code == 4000


def test_json_array_and_jsonl_files(tmp_path: Path) -> None:
    rec = {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}
    (tmp_path / "d.json").write_text(json.dumps([rec, rec]))
    (tmp_path / "d.jsonl").write_text(json.dumps(rec) + "\n\n" + json.dumps(rec) + "\n")
    assert len(load_records(tmp_path / "d.json")) == len(load_records(tmp_path / "d.jsonl")) == 2
    (tmp_path / "bad.jsonl").write_text(json.dumps(rec) + "\n{oops\n")
    with pytest.raises(RequestError, match="line 2 \\(record 1\\)"):
        load_records(tmp_path / "bad.jsonl")
    with pytest.raises(RequestError, match="limit is 1"):
        load_records(tmp_path / "d.json", max_records=1)
