"""``vlserve config show`` and ``vlserve config check``: the effective configuration, and whether
a file is a valid one, without loading any model."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.markup import escape

from vlserve.config import Settings, read_file

app = typer.Typer(no_args_is_help=True, help="Show and check the configuration (nothing is loaded).")
err_console = Console(stderr=True)


def problems(err: Exception) -> list[str]:
    """One line per problem, each naming the setting at fault (``scheduling.lanes.batch.model: ...``)."""
    if isinstance(err, ValidationError):
        lines = []
        for item in err.errors(include_url=False):
            where = ".".join(str(part) for part in item["loc"])
            for message in str(item["msg"]).removeprefix("Value error, ").splitlines():
                lines.append(f"{where}: {message}" if where and not message.startswith(where) else message)
        return lines
    return [str(err)]


def load_or_exit(path: Path | None, **overrides: Any) -> Settings:
    """``Settings.load``, or the problems printed on stderr and exit code 2 (for every command).
    Names in the file that are no setting are ignored by the settings, so they are warned about."""
    try:
        settings = Settings.load(path, **overrides)
    except (OSError, ValueError) as err:
        source = f"{path}" if path else "the configuration"
        for line in problems(err):
            err_console.print(f"[bold red]error[/]: invalid settings in {escape(source)}: {escape(line)}",
                              highlight=False, soft_wrap=True)
        raise typer.Exit(code=2) from None
    if path is not None:
        for name in unknown_keys(read_file(path)):
            err_console.print(f"[yellow]warning[/]: {escape(str(path))}: {escape(name)} is not a setting "
                              "(ignored; misspelt?)", highlight=False, soft_wrap=True)
    return settings


def unknown_keys(data: Any, model: type[BaseModel] = Settings, prefix: str = "") -> list[str]:
    """Dotted names in ``data`` that ``model`` has no setting for (typos are otherwise ignored)."""
    if not isinstance(data, dict):
        return []
    out = []
    for key, value in data.items():
        field = model.model_fields.get(key)
        name = f"{prefix}{key}"
        if field is None:
            out.append(name)
            continue
        inner = _model_in(field.annotation)
        if inner is None:
            continue
        if typing.get_origin(field.annotation) is dict and isinstance(value, dict):
            for sub, item in value.items():
                out += unknown_keys(item, inner, f"{name}.{sub}.")
        elif typing.get_origin(field.annotation) is list and isinstance(value, list):
            for i, item in enumerate(value):
                out += unknown_keys(item, inner, f"{name}[{i}].")
        else:
            out += unknown_keys(value, inner, f"{name}.")
    return out


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The settings model inside ``Model``, ``dict[str, Model]`` or ``list[Model]``, if any."""
    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def to_toml(settings: Settings) -> str:
    """The settings as a TOML config file that loads back to the same settings."""
    import tomli_w

    data = settings.model_dump(mode="json", exclude_none=True)  # TOML has no null: unset means default
    return tomli_w.dumps(data)


@app.command("show")
def show(
    config: Annotated[Path | None, typer.Option(help="Settings file (TOML, JSON or YAML).")] = None,
) -> None:
    """Print the effective configuration (defaults, then FILE, then VLSERVE_* variables) as TOML."""
    typer.echo(to_toml(load_or_exit(config)), nl=False)


@app.command("check")
def check(file: Annotated[Path, typer.Argument(help="Settings file (TOML, JSON or YAML).")]) -> None:
    """Validate a settings file: exit 0 when it is valid, else print each problem and exit 1.

    Beyond what the server checks at start (types, bounds, every lane's engine and fallback), names
    that are no setting at all are reported too: the server ignores them, which hides typos."""
    lines: list[str] = []
    try:
        lines += [f"{name}: not a setting (misspelt?)" for name in unknown_keys(read_file(file))]
        Settings.load(file)
    except (OSError, ValueError) as err:
        lines += problems(err)
    for line in lines:
        err_console.print(f"[bold red]error[/]: {escape(str(file))}: {escape(line)}", highlight=False,
                          soft_wrap=True)
    if lines:
        raise typer.Exit(code=1)
    typer.echo(f"{file}: valid")
