"""The ``vlserve`` command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from vlserve.cli.config import app as config_app
from vlserve.cli.demo import demo as demo_command
from vlserve.cli.finetune import app as finetune_app
from vlserve.cli.purge import purge_command
from vlserve.cli.recon3d import app as recon3d_app
from vlserve.errors import VlserveError

app = typer.Typer(no_args_is_help=True, help="Self-hosted Qwen3-VL: runtime, task API and 3D reconstruction.")
models_app = typer.Typer(no_args_is_help=True, help="Build and inspect model checkpoints.")
app.add_typer(models_app, name="models")
app.add_typer(recon3d_app, name="recon3d")
app.add_typer(config_app, name="config")
app.add_typer(finetune_app, name="finetune")
app.command("purge")(purge_command)
app.command("demo")(demo_command)

console = Console()
err_console = Console(stderr=True)


def fail(err: VlserveError) -> typer.Exit:
    """Print a typed error without a traceback; the exit code says it was the input's fault."""
    err_console.print(f"[bold red]error {err.code}[/]: {err.message}")
    return typer.Exit(code=2)


@models_app.command("make-tiny")
def make_tiny(
    directory: Annotated[Path, typer.Argument(help="Where to write the checkpoint.")],
    moe: Annotated[bool, typer.Option("--moe", help="Qwen3-VL-MoE (8 experts, top-2) instead of dense.")] = False,
    seed: Annotated[int, typer.Option(help="Seed of the random weights.")] = 0,
) -> None:
    """Write a tiny random Qwen3-VL checkpoint that loads exactly like a downloaded one."""
    from vlserve.runtime.tiny import make_tiny as build

    with console.status("building tiny model"):
        out = build(directory, moe=moe, seed=seed)
    console.print(f"[green]wrote[/] {out} ({'MoE' if moe else 'dense'})")


@models_app.command("show")
def show(model: Annotated[str, typer.Argument(help="tiny, tiny-moe, a directory or a hub id.")] = "tiny") -> None:
    """Resolve a model name and print what the checkpoint is (a hub id only from the local cache:
    this command never downloads)."""
    from vlserve.errors import ModelNotFoundError
    from vlserve.runtime.loading import resolve_checkpoint

    try:
        ckpt = resolve_checkpoint(model, allow_download=False)
    except ModelNotFoundError as err:
        if "not in the Hugging Face cache" in err.message:
            raise fail(ModelNotFoundError(
                f"{model!r} is not downloaded: `models show` only looks in the local Hugging Face cache "
                f"and never downloads; `vlserve serve --model {model}` downloads it")) from None
        raise fail(err) from None
    except VlserveError as err:
        raise fail(err) from None
    console.print_json(
        json.dumps(
            {"name": ckpt.name, "path": str(ckpt.path), "model_type": ckpt.model_type, "moe": ckpt.is_moe,
             "num_experts": ckpt.num_experts}
        )
    )


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="What to ask about the inputs.")],
    model: Annotated[str, typer.Option(help="tiny, tiny-moe, a checkpoint directory or a hub id.")] = "tiny",
    image: Annotated[list[str] | None, typer.Option(help="Image path or URL (repeatable).")] = None,
    video: Annotated[list[str] | None, typer.Option(help="Video path or URL (repeatable).")] = None,
    max_tokens: Annotated[int, typer.Option(help="Most tokens to generate.")] = 256,
    temperature: Annotated[float, typer.Option(help="0 = greedy.")] = 0.0,
    top_p: Annotated[float, typer.Option()] = 1.0,
    top_k: Annotated[int, typer.Option()] = 0,
    seed: Annotated[int | None, typer.Option()] = None,
    fps: Annotated[float | None, typer.Option(help="Video frames sampled per second.")] = None,
    schema: Annotated[Path | None, typer.Option(help="JSON Schema file: constrain the answer to it (with "
                                                "--server: for --task extract).")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the full result as JSON.")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    dtype: Annotated[str, typer.Option(help="auto, float32, bfloat16 or float16.")] = "auto",
    server: Annotated[str | None, typer.Option(help="Ask a running vlserve at this URL instead.")] = None,
    task: Annotated[str, typer.Option(help="Task, with --server (vqa, captioning, chart_parse, ...).")] = "vqa",
    api_key: Annotated[str | None, typer.Option(envvar="VLSERVE_API_KEY", help="API key for --server.")] = None,
    timeout: Annotated[float | None, typer.Option(
        min=0.1, help="Seconds to wait for --server's answer (default 30, with a video 120).")] = None,
    config: Annotated[Path | None, typer.Option(
        help="Settings file: media limits as the server applies them (default: the server's defaults).")] = None,
) -> None:
    """Ask the model a question about images and videos; the answer streams to the terminal.

    ``--json`` prints the task API's result (request_id, answer, confidence, metadata, code, msg)
    in both modes."""
    from vlserve.cli.asking import run_ask, run_ask_server
    from vlserve.cli.config import load_or_exit

    try:
        json_schema: dict[str, Any] | None = json.loads(schema.read_text()) if schema else None
    except (OSError, ValueError) as err:
        err_console.print(f"[bold red]error[/]: cannot read the schema {schema}: {err}")
        raise typer.Exit(code=2) from None
    if server:
        try:  # a server takes a caller's schema with task extract (options.json_schema; None is left out)
            run_ask_server(server, api_key, question, task=task, images=image or [], videos=video or [],
                           options={"max_tokens": max_tokens, "temperature": temperature, "top_p": top_p,
                                    "top_k": top_k, "seed": seed, "fps": fps, "json_schema": json_schema},
                           json_output=json_output, out=sys.stdout, timeout=timeout)
        except VlserveError as err:
            raise fail(err) from None
        return
    try:
        run_ask(
            question,
            model=model,
            images=image or [],
            videos=video or [],
            options={
                "max_tokens": max_tokens, "temperature": temperature, "top_p": top_p, "top_k": top_k,
                "seed": seed, "json_schema": json_schema,
            },
            fps=fps,
            json_output=json_output,
            device=device,
            dtype=dtype,
            out=sys.stdout,
            settings=load_or_exit(config),
        )
    except VlserveError as err:
        raise fail(err) from None


@app.command()
def serve(
    model: Annotated[str | None, typer.Option(help="tiny, tiny-moe, a checkpoint directory or a hub id.")] = None,
    host: Annotated[str | None, typer.Option(help="Interface to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    config: Annotated[Path | None, typer.Option(help="Settings file (TOML, JSON or YAML).")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu or cuda.")] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
    data_dir: Annotated[Path | None, typer.Option(
        help="Where all state lives (jobs, artifacts, audit log); env VLSERVE_DATA_DIR; default "
        "~/.local/share/vlserve.")] = None,
    adapter: Annotated[Path | None, typer.Option(
        help="LoRA adapter folder from `vlserve finetune` (for --model; merged into it at load).")] = None,
) -> None:
    """Run the task API (/infer, /infer_stream, /v1/chat/completions) on uvicorn."""
    import uvicorn

    from vlserve.api.app import create_app
    from vlserve.api.listen import PortUnavailableError, bind_listener
    from vlserve.cli.config import load_or_exit

    # Everything that can be wrong before a model loads is checked first: the settings (with every
    # lane's engine names) and the port.
    settings = load_or_exit(config, model=model, host=host, port=port, device=device, data_dir=data_dir,
                            adapter=adapter)
    try:
        listener = bind_listener(settings.host, settings.port)
    except PortUnavailableError as err:
        err_console.print(f"[bold red]error[/]: {escape(str(err))}", highlight=False)
        raise typer.Exit(code=2) from None
    bound = listener.getsockname()[1]  # the real port when --port 0 let the system choose
    serving = (f"{len(settings.remote.upstreams)} upstream server(s)" if settings.remote.upstreams
               else f"model {settings.model}")
    console.print(f"vlserve on http://{settings.host}:{bound} ({serving}; docs at /docs)")
    # Generation threads run Python between torch kernels; a shorter GIL switch interval (default
    # 5 ms) lets the event loop answer admissions and refusals sooner while a batch is running.
    sys.setswitchinterval(0.0005)
    from vlserve.api.connection import uvicorn_options

    server = uvicorn.Server(uvicorn.Config(create_app(settings), log_level=log_level, **uvicorn_options(settings)))
    server.run(sockets=[listener])


keys_app = typer.Typer(no_args_is_help=True, help="API keys.")
app.add_typer(keys_app, name="keys")


@keys_app.command("new")
def keys_new(key_id: Annotated[str, typer.Argument(help="A name for the key.")]) -> None:
    """Make a new API key: the key goes to the terminal (stderr: give it to the client), the config
    entry to stdout as TOML, so ``vlserve keys new NAME >> vlserve.toml`` stores only its hash."""
    import tomli_w

    from vlserve.service.auth import hash_key, new_key

    key = new_key()
    err_console.print(f"API key for {escape(key_id)} (give it to the client; it is not stored): {key}",
                      highlight=False, soft_wrap=True)
    # An array-of-tables entry: appended to a config, it adds one more key beside those already there.
    typer.echo("[[auth.keys]]\n" + tomli_w.dumps({"id": key_id, "sha256": hash_key(key)}), nl=False)


if __name__ == "__main__":
    app()
