"""`mcpfleet`: the one console script. Each component is a subcommand, imported only when run."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from pydantic import ValidationError

app = typer.Typer(
    name="mcpfleet",
    help=(
        "mcpfleet: an MCP platform for Kubernetes. The operator turns MCPServer objects into running, "
        "least-privileged MCP servers; the gateway serves their tools to AI clients."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
crd_app = typer.Typer(help="The MCPServer CustomResourceDefinition.", no_args_is_help=True)
app.add_typer(crd_app, name="crd")


def _settings_error(exc: ValidationError, prefix: str) -> typer.Exit:
    for error in exc.errors(include_url=False):
        field = ".".join(str(part) for part in error["loc"])
        typer.echo(f"error: {prefix}{field.upper()} ({field}): {error['msg']}", err=True)
    return typer.Exit(code=2)


@app.command()
def operator(
    namespace: Annotated[
        list[str] | None,
        typer.Option(
            "--namespace",
            "-n",
            help="Watch only this namespace (repeatable). Default: MCPFLEET_OPERATOR_NAMESPACES, else all.",
        ),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(help="Port of /metrics (0 turns it off). Default: MCPFLEET_OPERATOR_METRICS_PORT."),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log every event and API call.")] = False,
) -> None:
    """Run the MCPServer operator against the current cluster (in-cluster credentials or kubeconfig).

    Settings come from MCPFLEET_OPERATOR_* environment variables (see docs/operator.md); the options
    here override them.
    """
    from mcpfleet_operator.main import run  # noqa: PLC0415 - the operator's imports are heavy
    from mcpfleet_operator.settings import OperatorSettings  # noqa: PLC0415

    overrides: dict[str, Any] = {}
    if namespace:
        overrides["namespaces"] = tuple(namespace)
    if metrics_port is not None:
        overrides["metrics_port"] = metrics_port
    try:
        settings = OperatorSettings(**overrides)
    except ValidationError as exc:
        raise _settings_error(exc, "MCPFLEET_OPERATOR_") from exc
    run(settings, verbose=verbose)


@crd_app.command("print")
def crd_print() -> None:
    """Print the MCPServer CRD (YAML) generated from the typed models; `kubectl apply -f -` takes it."""
    from mcpfleet_contracts.crd import render_crd_yaml  # noqa: PLC0415

    typer.echo(render_crd_yaml(), nl=False)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
