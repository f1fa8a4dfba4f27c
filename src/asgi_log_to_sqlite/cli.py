"""The ``asgi-log-to-sqlite`` command: thin click commands over the library's functions."""

from __future__ import annotations

import click

from . import __version__


@click.group()
@click.version_option(__version__, prog_name="asgi-log-to-sqlite")
def cli() -> None:
    """Log ASGI requests to SQLite, and turn those logs into answers."""


@cli.command(name="metadata")
@click.argument("log_db", type=click.Path(exists=True, dir_okay=False))
@click.option("--yaml", "as_yaml", is_flag=True, help="YAML instead of JSON (needs PyYAML).")
@click.option("--database", help="Database name in Datasette (default: the file name's stem).")
@click.option(
    "--config",
    "config_part",
    is_flag=True,
    help="Datasette 1.0's configuration half (datasette.yaml): facets, sort order, labels, "
    "canned queries. Without it: a metadata file (complete for Datasette 0.65).",
)
def metadata_command(log_db: str, as_yaml: bool, database: str | None, config_part: bool) -> None:
    """Print Datasette metadata for a log: descriptions, facets, canned queries."""
    import json

    from .metadata import metadata_for_file, split_for_datasette_1

    try:
        document = metadata_for_file(log_db, database)
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    if config_part:
        document = split_for_datasette_1(document)[1]
    if as_yaml:
        try:
            import yaml
        except ImportError:
            raise click.ClickException("--yaml needs PyYAML: pip install pyyaml") from None
        class BlockDumper(yaml.SafeDumper):
            """Multi-line SQL as readable ``|`` blocks."""

        def text(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
            style = "|" if "\n" in value else None
            return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

        BlockDumper.add_representer(str, text)
        click.echo(
            yaml.dump(document, Dumper=BlockDumper, sort_keys=False, allow_unicode=True), nl=False
        )
    else:
        click.echo(json.dumps(document, indent=2))


# --- rotation and retention ---------------------------------------------------------------
def _duration(ctx: click.Context, param: click.Parameter, value: str) -> float:
    from .options import parse_duration

    try:
        return parse_duration(value)
    except (TypeError, ValueError) as error:
        raise click.BadParameter(str(error)) from None


@cli.command()
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--keep", type=click.IntRange(min=1), help="Rotated files to keep; older ones go.")
def rotate(path: str, keep: int | None) -> None:
    """Rotate a log now: keep it under a dated name and start a fresh one."""
    from .maintenance import MaintenanceError, rotate_now

    try:
        target = rotate_now(path, keep=keep)
    except MaintenanceError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"Rotated {path} to {target}")


@cli.command()
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--older-than", required=True, callback=_duration,
              help="Delete rows older than this: 30d, 12h, 90m, 45s, 2w.")
def prune(path: str, older_than: float) -> None:
    """Delete old rows from a log, in small transactions, and give the space back."""
    from .maintenance import MaintenanceError
    from .maintenance import prune as prune_rows

    try:
        result = prune_rows(path, older_than)
    except MaintenanceError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"Deleted {result.deleted} row(s) from {path}; {result.remaining} remain")


@cli.command()
@click.argument("path", type=click.Path(dir_okay=False))
def vacuum(path: str) -> None:
    """Rebuild a log file at its smallest size."""
    from .maintenance import MaintenanceError
    from .maintenance import vacuum as vacuum_file

    try:
        result = vacuum_file(path)
    except MaintenanceError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"Vacuumed {path}: {result.bytes_before:,} -> {result.bytes_after:,} bytes")


@cli.command()
@click.argument("out", type=click.Path(dir_okay=False))
@click.argument("inputs", nargs=-1, required=True, type=click.Path(dir_okay=False))
def merge(out: str, inputs: tuple[str, ...]) -> None:
    """Combine rotated or per-host logs into one database; files already merged are skipped."""
    from .maintenance import MaintenanceError
    from .maintenance import merge as merge_files

    import sys

    bars: list = []

    def progress(done: int, total: int) -> None:
        if not bars:
            # On stderr: stdout stays the summary, for scripts.
            bars.append(click.progressbar(length=total, label="Merging rows", file=sys.stderr))
            bars[0].__enter__()
        bar = bars[0]
        bar.update(done - bar.pos)

    try:
        result = merge_files(out, list(inputs), progress=progress)
    except MaintenanceError as error:
        raise click.ClickException(str(error)) from None
    finally:
        if bars:
            bars[0].__exit__(None, None, None)
    for path in result.skipped:
        click.echo(f"Skipped {path}: already merged")
    click.echo(f"Merged {len(result.merged)} file(s), {result.rows} row(s) into {out}")
