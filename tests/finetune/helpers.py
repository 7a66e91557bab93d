"""A synthetic visual task for fine-tuning tests: coloured shapes, and questions about them.

Each image shows 1-3 shapes of one kind (circle, square, triangle) in one colour (red, green,
blue) on a light background; a record asks the colour, the shape or the count. Three answers per
question, so a model guessing among them scores about 33 %.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from vlserve.testing.server import iter_server

COLOURS = {"red": (220, 30, 30), "green": (30, 170, 40), "blue": (40, 60, 220)}
SHAPES = ("circle", "square", "triangle")
QUESTIONS = {
    "colour": "What colour are the shapes?",
    "shape": "What shape are they?",
    "count": "How many shapes are there?",
}
SIZE = 64  # pixels per side: 4 x 4 patches of 16 px, 2 x 2 = 4 vision tokens after the merge
CELL = SIZE // 2  # one shape per quadrant, which is also one vision token's 32 x 32 pixels


def draw(colour: str, shape: str, count: int, rng: random.Random, size: int = SIZE) -> Image.Image:
    """One picture: ``count`` shapes in distinct quadrants; sizes, offsets and shades vary."""
    image = Image.new("RGB", (size, size), tuple(rng.randint(225, 255) for _ in range(3)))
    pen = ImageDraw.Draw(image)
    cell = size // 2
    for row, col in rng.sample([(0, 0), (0, 1), (1, 0), (1, 1)], count):
        side = rng.randint(cell * 7 // 10, cell * 9 // 10)
        x = col * cell + rng.randint(1, cell - side - 1)
        y = row * cell + rng.randint(1, cell - side - 1)
        box = (x, y, x + side, y + side)
        fill = tuple(min(255, max(0, c + rng.randint(-20, 20))) for c in COLOURS[colour])
        if shape == "circle":
            pen.ellipse(box, fill=fill)
        elif shape == "square":
            pen.rectangle(box, fill=fill)
        else:
            pen.polygon([(x + side / 2, y), (x, y + side), (x + side, y + side)], fill=fill)
    return image


def make_dataset(folder: Path, n: int, *, seed: int, fmt: str = "seed",
                 questions: int = 1) -> tuple[Path, list[dict[str, str]]]:
    """``n`` records in ``folder`` (images beside the data file); returns the file and
    ``[{"image", "question", "answer"}]`` (one per record: its last question). ``fmt``: ``seed``
    (JSON array) or ``openai`` (JSONL). ``questions`` > 1 makes multi-turn conversations asking
    that many of the three questions about the one image."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    records, plain = [], []
    for i in range(n):
        colour, shape, count = rng.choice(list(COLOURS)), rng.choice(SHAPES), rng.randint(1, 3)
        kinds = rng.sample(list(QUESTIONS), questions)
        answers = {"colour": colour, "shape": shape, "count": str(count)}
        name = f"img{i:04d}.png"
        draw(colour, shape, count, rng).save(folder / name)
        plain.append({"image": str(folder / name), "question": QUESTIONS[kinds[-1]], "answer": answers[kinds[-1]]})
        if fmt == "openai":
            messages: list[dict[str, Any]] = []
            for j, kind in enumerate(kinds):
                media = [{"type": "image_url", "image_url": {"url": name}}] if j == 0 else []
                messages += [{"role": "user", "content": [*media, {"type": "text", "text": QUESTIONS[kind]}]},
                             {"role": "assistant", "content": answers[kind]}]
            records.append({"messages": messages})
        else:
            turns = []
            for j, kind in enumerate(kinds):
                turns += [{"from": "human", "value": ("<image>\n" if j == 0 else "") + QUESTIONS[kind]},
                          {"from": "gpt", "value": answers[kind]}]
            records.append({"image": name, "conversations": turns})
    if fmt == "openai":
        path = folder / "data.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
    else:
        path = folder / "data.json"
        path.write_text(json.dumps(records, indent=1))
    return path, plain


serve_in_thread = iter_server  # a real uvicorn on loopback, in a thread

def data_uri(path: str | Path) -> str:
    import base64

    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode()
