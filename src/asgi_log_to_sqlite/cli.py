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
