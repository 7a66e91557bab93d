"""``vlserve ask --server URL --task extract --schema FILE``: the schema file travels as the
request's ``options.json_schema`` and the answer comes back valid against it."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
from PIL import Image
from typer.testing import CliRunner

from tests.api.helpers import make_settings, run_server
from vlserve.api.app import create_app
from vlserve.cli.main import app

SCHEMA = {"type": "object", "properties": {"code": {"type": "string", "maxLength": 8},
                                           "count": {"type": "integer", "minimum": 0, "maximum": 9}},
          "required": ["code", "count"], "additionalProperties": False}


def test_ask_extract_through_a_server(engine: object, tmp_path: Path) -> None:
    image = tmp_path / "label.png"
    Image.new("RGB", (96, 48), (200, 30, 30)).save(image)
    schema = tmp_path / "label.schema.json"
    schema.write_text(json.dumps(SCHEMA))
    runner = CliRunner()
    for url in run_server(create_app(make_settings(tmp_path), engine=engine)):  # type: ignore[arg-type]
        result = runner.invoke(app, ["ask", "--server", url, "--task", "extract", "--schema", str(schema),
                                     "--image", str(image), "--max-tokens", "40", "--json", "--timeout", "600",
                                     "Read the label"])
        assert result.exit_code == 0, result.output
        answer = json.loads(result.stdout)["answer"]
        assert answer["valid"] is True
        jsonschema.validate(answer["data"], SCHEMA)
        missing = runner.invoke(app, ["ask", "--server", url, "--task", "extract", "--image", str(image), "x"])
        assert missing.exit_code != 0 and "options.json_schema" in missing.output
