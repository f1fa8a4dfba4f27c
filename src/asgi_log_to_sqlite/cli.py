"""The ``asgi-log-to-sqlite`` command: thin click commands over the library's functions."""

from __future__ import annotations

from collections.abc import Callable

import click

from . import __version__


@click.group()
@click.version_option(__version__, prog_name="asgi-log-to-sqlite")
def cli() -> None:
    """Log ASGI requests to SQLite, and turn those logs into answers."""


def _failure(error: Exception) -> click.ClickException:
    """An error as click's one line, exit 1; names that are not UTF-8 shown with \ufffd.

    SQLite's messages can span lines (a damaged schema is quoted statement and all).
    """
    return click.ClickException(" ".join(_shown(str(error)).split()))


def _shown(text: str) -> str:
    """Text with file names in it, printable whatever the terminal's encoding: a name that is not
    UTF-8 (a surrogate escape) would raise on a strict standard output."""
    return click.format_filename(text)


# --- serve, report, tail, demo ------------------------------------------------------------
def _option_pair(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict:
    """``--option name=value``: the value read as JSON when it parses (numbers, true, lists)."""
    import json

    options = {}
    for item in values:
        name, sep, raw = item.partition("=")
        if not sep or not name.strip():
            raise click.BadParameter(f"{item!r} is not NAME=VALUE")
        try:
            options[name.strip().replace("-", "_")] = json.loads(raw)
        except ValueError:
            options[name.strip().replace("-", "_")] = raw
    return options


@cli.command()
@click.argument("app")
@click.option("--db", default="log.db", show_default=True, help="The log database to write.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1),
              help="Worker processes; each logs through its own writer to the same file.")
@click.option("--flush-interval", type=float, help="Seconds between the writer's commits.")
@click.option("--batch-size", type=int, help="Rows committed per transaction at most.")
@click.option("--max-queue", type=int, help="Records waiting for the writer at most.")
@click.option("--option", "-O", "extra", multiple=True, callback=_option_pair,
              metavar="NAME=VALUE", help="Any other middleware option, e.g. -O retry_for=30.")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))
def serve(app: str, db: str, host: str, port: int, workers: int, flush_interval: float | None,
          batch_size: int | None, max_queue: int | None, extra: dict, log_level: str) -> None:
    """Serve an ASGI app (module:attribute) under uvicorn, logging every request to --db."""
    try:
        import uvicorn  # noqa: F401  (in the cli extra)
    except ImportError as error:
        raise click.ClickException(
            f"serve needs uvicorn ({error}): pip install 'asgi-log-to-sqlite[cli]'"
        ) from None
    from .serve import serve as run

    options = dict(extra)
    for name, value in (("flush_interval", flush_interval), ("batch_size", batch_size),
                        ("max_queue", max_queue)):
        if value is not None:
            options[name] = value
    from uvicorn.main import STARTUP_FAILURE

    try:
        run(app, db, host=host, port=port, workers=workers, options=options, log_level=log_level)
    except (TypeError, ValueError, OSError) as error:
        raise _failure(error) from None
    except SystemExit as stop:  # uvicorn could not start (an address in use): it logged why
        if stop.code != STARTUP_FAILURE:
            raise
        raise click.ClickException("the server did not start (uvicorn's error is above)") from None


def _when(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    from .report import parse_when

    if value is None:
        return None
    try:
        return parse_when(value)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


def _central(logs: tuple[str, ...]) -> str | None:
    """The PostgreSQL URL among ``logs`` (then it must be alone), or None for files."""
    from .postgresql_schema import is_postgresql_url

    urls = [log for log in logs if is_postgresql_url(log)]
    if urls and len(logs) > 1:
        raise click.UsageError("a PostgreSQL URL is a whole log: give it alone")
    return urls[0] if urls else None


def _statuses(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> tuple:
    from .report import parse_status

    try:
        return tuple(parse_status(part) for value in values for part in value.split(",") if part)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


def _methods(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> tuple:
    from .report import parse_methods

    try:
        return parse_methods(values)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


def _as_stored(value: str) -> str:
    """A command-line value as the log stores text: bytes that are not UTF-8 (surrogates in
    ``sys.argv``) become the ``\\xNN`` escapes the middleware writes for them."""
    if value.isascii():
        return value
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _names(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> tuple:
    for value in values:
        if not value or "\x00" in value:
            raise click.BadParameter("needs a non-empty value")
    return tuple(_as_stored(value) for value in values)


def _paths(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> tuple:
    """Paths as the log stores them: bytes that are not UTF-8 as ``%XX`` (see raw_path.py)."""
    from .raw_path import readable_path

    _names(ctx, param, values)
    return tuple(
        value if value.isascii() or "%" in value
        else readable_path(value.encode("utf-8", "surrogateescape"))[0]
        for value in values
    )


def _name(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    return None if value is None else _names(ctx, param, (value,))[0]


def _compare(ctx: click.Context, param: click.Parameter, value: str | None) -> object:
    """``previous``, or ``SINCE..UNTIL`` (each like --since)."""
    from .report import parse_when

    if value is None or value.strip().lower() == "previous":
        return None if value is None else "previous"
    since, sep, until = value.partition("..")
    if not sep or not since.strip() or not until.strip():
        raise click.BadParameter(f"{value!r} is neither 'previous' nor SINCE..UNTIL")
    try:
        window = (parse_when(since), parse_when(until))
    except ValueError as error:
        raise click.BadParameter(str(error)) from None
    if window[0] >= window[1]:
        raise click.BadParameter(f"{value!r}: SINCE must be earlier than UNTIL")
    return window


def filter_options(command: Callable[..., None]) -> Callable[..., None]:
    """--path, --route, --status, --host, --method and --instance, shared by report and tail."""
    for decorator in reversed((
        click.option("--path", "paths", multiple=True, callback=_paths, metavar="PATH",
                     help="Only this path and below (/api), or a glob (/blog/*); repeatable."),
        click.option("--route", "routes", multiple=True, callback=_names, metavar="ROUTE",
                     help="Only this route template (/items/{id}), or a glob; repeatable."),
        click.option("--status", "statuses", multiple=True, callback=_statuses,
                     help="Only these statuses: 404, 5xx, or a list 401,403 (repeatable)."),
        click.option("--host", "hosts", multiple=True, callback=_names, metavar="HOST",
                     help="Only this Host header, or a glob (*.example.com); repeatable."),
        click.option("--method", "methods", multiple=True, callback=_methods,
                     help="Only these methods: GET, or a list GET,HEAD (repeatable)."),
        click.option("--instance", "instances", multiple=True, callback=_names,
                     metavar="NAME", help="Only this host or container (the instance column), "
                     "or a glob (web-*); repeatable."),
    )):
        command = decorator(command)
    return command


def _needs(module: str, what: str) -> None:
    """A clear message, not a traceback, when part of the cli extra is missing."""
    import importlib.util

    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise click.ClickException(
            f"{what} needs {module} (in the cli extra): pip install 'asgi-log-to-sqlite[cli]'"
        )


@cli.command()
@click.argument("logs", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--since", callback=_when, help="Only requests after: 24h, 7d, 30m or an ISO date.")
@click.option("--until", callback=_when, help="Only requests before: 24h, 7d or an ISO date.")
@filter_options
@click.option("--compare", callback=_compare, metavar="previous|SINCE..UNTIL",
              help="Show each figure beside the previous window of the same length, or beside "
              "SINCE..UNTIL, with its change.")
@click.option("--format", "-f", "fmt", default="text", show_default=True,
              type=click.Choice(["text", "json", "html"]))
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True),
              help="Write to this file instead of standard output.")
@click.option("--limit", default=10, show_default=True, type=click.IntRange(1, 100_000),
              help="Rows in each top-N table.")
def report(logs: tuple[str, ...], since: float | None, until: float | None,
           paths: tuple[str, ...], routes: tuple[str, ...], statuses: tuple, hosts: tuple[str, ...],
           methods: tuple[str, ...], instances: tuple[str, ...], compare: object, fmt: str,
           output: str | None, limit: int) -> None:
    """Summarise one or more logs (rotated files read as one) as text, JSON or HTML."""
    _needs("ua_parser", "report")
    if fmt == "html":
        _needs("jinja2", "report --format html")
    from .report import (
        Filters,
        ReportError,
        agents,
        build_report,
        render_html,
        render_json,
        render_text,
    )
    from .report.files import display

    filters = Filters(paths=paths, routes=routes, statuses=statuses, hosts=hosts,
                      methods=methods, instances=instances)
    agents.cache = agents.AgentCache.default()  # ua-parser's answers, kept between runs
    _central(logs)  # a URL stands alone
    try:
        data = build_report(list(logs), since=since, until=until, limit=limit,
                            filters=filters, compare=compare)  # type: ignore[arg-type]
    except ReportError as error:
        raise _failure(error) from None
    finally:
        agents.cache.save()
        agents.cache = None
    render = {"text": render_text, "json": render_json, "html": render_html}[fmt]
    content = render(data)
    if output:
        try:
            with open(output, "w", encoding="utf-8") as file:
                file.write(content)
        except OSError as error:
            raise click.ClickException(
                f"cannot write {display(output)}: {error.strerror}") from None
        click.echo(f"Wrote {fmt} report to {display(output)}", err=True)
    else:
        click.echo(content, nl=False)


@cli.command()
@click.argument("log", type=click.Path(dir_okay=False))
@click.option("-n", "--lines", default=10, show_default=True, type=click.IntRange(0, 10**9),
              help="How many recent requests to show first.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing requests as they arrive.")
@filter_options
@click.option("--interval", default=0.5, show_default=True, type=click.FloatRange(0.01, 3600),
              help="Seconds between polls with --follow.")
def tail(log: str, lines: int, follow: bool, paths: tuple[str, ...], routes: tuple[str, ...],
         statuses: tuple, hosts: tuple[str, ...], methods: tuple[str, ...],
         instances: tuple[str, ...], interval: float) -> None:
    """Print recent requests as access-log lines; -f follows new ones."""
    from .report import Filters, ReportError
    from .report.tail import tail as run

    filters = Filters(paths=paths, routes=routes, statuses=statuses, hosts=hosts,
                      methods=methods, instances=instances)
    try:
        if _central((log,)) is not None:
            from .central import CentralError
            from .central import tail as run_central

            try:
                run_central(log, lines=lines, follow=follow, filters=filters, interval=interval,
                            emit=click.echo)
            except CentralError as error:
                raise _failure(error) from None
        else:
            run(log, lines=lines, follow=follow, filters=filters, interval=interval,
                emit=click.echo)
    except ReportError as error:
        raise _failure(error) from None
    except KeyboardInterrupt:
        pass


@cli.command()
@click.option("--db", default="demo.db", show_default=True, help="Where to write the demo log.")
@click.option("--requests", "count", default=3000, show_default=True, type=click.IntRange(min=1))
@click.option("--seconds", default=8.0, show_default=True, type=click.FloatRange(min=0),
              help="Spread the traffic over about this long.")
def demo(db: str, count: int, seconds: float) -> None:
    """Serve a bundled example site with generated traffic, log it, and report on it."""
    import sys

    from .demo import run_demo
    from .report import build_report, render_text
    from .report.files import display

    click.echo(f"Sending {count:,} requests from simulated visitors through the demo site...")
    with click.progressbar(length=count, label="Requests", file=sys.stderr) as bar:
        try:
            run_demo(db, requests=count, seconds=seconds, progress=bar.update)
        except (OSError, ValueError) as error:  # a missing folder, a pipe, a device...
            raise click.ClickException(display(str(error))) from None
    click.echo(render_text(build_report([db])))
    click.echo(f"The log is in {db}. Explore it with:")
    click.echo(f"  datasette {db}")
    click.echo(f"  asgi-log-to-sqlite report {db} --format html -o report.html")


@cli.command(name="metadata")
@click.argument("log_db", type=click.Path(dir_okay=False))
@click.option("--yaml", "as_yaml", is_flag=True, help="YAML instead of JSON (needs PyYAML).")
@click.option("--database", help="Database name in Datasette (default: the file name's stem).")
@click.option(
    "--config",
    "config_part",
    is_flag=True,
    help="Datasette 1.0's configuration half (datasette.yaml): facets, sort order, labels, "
    "canned queries, the dashboard. Without it: a metadata file (complete for Datasette 0.65).",
)
def metadata_command(log_db: str, as_yaml: bool, database: str | None, config_part: bool) -> None:
    """Print Datasette metadata for a log: descriptions, facets, canned queries, dashboard."""
    import json

    from .metadata import metadata_for_file, split_for_datasette_1

    try:
        document = metadata_for_file(log_db, database)
    except (OSError, ValueError) as error:
        raise _failure(error) from None
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
        raise _failure(error) from None
    click.echo(_shown(f"Rotated {path} to {target}"))


@cli.command()
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--older-than", required=True, callback=_duration,
              help="Delete rows older than this: 30d, 12h, 90m, 45s, 2w.")
@click.option("--keep-rollups/--no-keep-rollups", default=True, show_default=True,
              help="Keep the hourly and daily rollups of the deleted rows (reports over those "
              "times read them); --no-keep-rollups deletes them too.")
def prune(path: str, older_than: float, keep_rollups: bool) -> None:
    """Delete old rows from a log, in small transactions, and give the space back."""
    from .maintenance import MaintenanceError
    from .maintenance import prune as prune_rows

    if _central((path,)) is not None:
        from .central import CentralError
        from .central import prune as prune_central

        try:
            found = prune_central(path, older_than)
        except CentralError as error:
            raise _failure(error) from None
        click.echo(f"Deleted {found.deleted} row(s) from {found.name}; {found.remaining} remain")
        return
    try:
        result = prune_rows(path, older_than, keep_rollups=keep_rollups)
    except MaintenanceError as error:
        raise _failure(error) from None
    click.echo(_shown(f"Deleted {result.deleted} row(s) from {path}; {result.remaining} remain"))


@cli.command()
@click.argument("path", type=click.Path(dir_okay=False))
def vacuum(path: str) -> None:
    """Rebuild a log file at its smallest size."""
    from .maintenance import MaintenanceError
    from .maintenance import vacuum as vacuum_file

    try:
        result = vacuum_file(path)
    except MaintenanceError as error:
        raise _failure(error) from None
    click.echo(_shown(f"Vacuumed {path}: {result.bytes_before:,} -> {result.bytes_after:,} bytes"))


@cli.command()
@click.argument("out", type=click.Path(dir_okay=False))
@click.argument("inputs", nargs=-1, required=True, type=click.Path(dir_okay=False))
def merge(out: str, inputs: tuple[str, ...]) -> None:
    """Combine rotated or per-host logs into one database; files already merged are skipped."""
    import contextlib
    import sys

    if _central((out,)) is not None:  # into a PostgreSQL log
        from .load import LoadError, load_files

        try:
            loaded = load_files(out, list(inputs))
        except LoadError as error:
            raise _failure(error) from None
        for path in loaded.skipped:
            click.echo(_shown(f"Skipped {path}: already loaded"))
        click.echo(_shown(f"Loaded {len(loaded.loaded)} file(s), "
                          f"{sum(loaded.loaded.values())} row(s) into the PostgreSQL log"))
        return

    from .maintenance import MaintenanceError
    from .maintenance import merge as merge_files

    with contextlib.ExitStack() as stack:
        bars: list = []

        def progress(done: int, total: int) -> None:
            if not bars:  # the total is known once every input was checked
                # On stderr: stdout stays the summary, for scripts.
                bar = click.progressbar(length=total, label="Merging rows", file=sys.stderr)
                bars.append(stack.enter_context(bar))
            bars[0].update(done - bars[0].pos)

        try:
            result = merge_files(out, list(inputs), progress=progress)
        except MaintenanceError as error:
            raise _failure(error) from None
    for path in result.skipped:
        click.echo(_shown(f"Skipped {path}: already merged"))
    click.echo(_shown(f"Merged {len(result.merged)} file(s), {result.rows} row(s) into {out}"))


@cli.command()
@click.argument("url")
@click.argument("log_db", type=click.Path(dir_okay=False))
@click.option("--since", callback=_when,
              help="Only requests after: 7d, 24h, 30m or an ISO date (default: all).")
@click.option("--instance", callback=_name,
              help="Only the requests of this instance (host or container).")
@click.option("--schema", help="The PostgreSQL schema holding the log (or ?schema= in the URL).")
def pull(url: str, log_db: str, since: float | None, instance: str | None,
         schema: str | None) -> None:
    """Copy a window of a PostgreSQL log into a SQLite log file; run again, only new rows."""
    import contextlib
    import sys

    from .pull import PullError
    from .pull import pull as pull_rows

    with contextlib.ExitStack() as stack:
        bars: list = []

        def progress(rows: int) -> None:
            if not bars and sys.stderr.isatty():
                bars.append(stack.enter_context(
                    click.progressbar(length=None, label="Pulling rows", file=sys.stderr)))
            if bars:
                bars[0].update(rows)

        try:
            result = pull_rows(url, log_db, since=since, instance=instance, schema=schema,
                               progress=progress)
        except PullError as error:
            raise _failure(error) from None
    click.echo(_shown(f"Pulled {result.rows} new row(s) into {log_db}; it holds {result.total}"))


# --- replay -------------------------------------------------------------------------------
def _pairs(parse_name: str) -> Callable[[click.Context, click.Parameter, tuple[str, ...]], list]:
    def parse(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> list:
        from . import replay

        try:
            return [getattr(replay, parse_name)(value) for value in values]
        except ValueError as error:
            raise click.BadParameter(str(error)) from None

    return parse


@cli.command()
@click.argument("log", type=click.Path(dir_okay=False))
@click.option("--target", help="The server to replay against: http://host:port.")
@click.option("--app", "app_spec", metavar="MODULE:ATTR",
              help="Or an ASGI app run in this process (its lifespan too).")
@click.option("--since", callback=_when, help="Only requests after: 24h, 7d, 30m or an ISO date.")
@click.option("--until", callback=_when, help="Only requests before: 24h, 7d or an ISO date.")
@click.option("--path", "paths", multiple=True, callback=_paths,
              help="Only this path and below (/api), or a glob (/blog/*); repeatable.")
@click.option("--route", "routes", multiple=True, callback=_names,
              help="Only this route template (/items/{item_id}), or a glob; repeatable.")
@click.option("--status", "statuses", multiple=True, callback=_statuses,
              help="Only requests logged with these statuses: 200, 5xx, 401,403 (repeatable).")
@click.option("--all-methods", is_flag=True, help="Also replay POST, PUT, DELETE... (not only "
              "GET and HEAD): only against a build whose side effects you can throw away.")
@click.option("--speed", type=click.FloatRange(min=0, min_open=True),
              help="Keep the logged gaps between requests, divided by this (1: original pace).")
@click.option("--rate", help="Send at a fixed rate instead: 500/s, 30/m.")
@click.option("--concurrency", "-c", type=click.IntRange(min=1),
              help="Requests in flight at most (alone: as fast as this allows).  [default: 1 "
              "without --speed or --rate, else 16]")
@click.option("--limit", "-n", type=click.IntRange(min=1), help="Send this many requests at most.")
@click.option("--duration", callback=lambda c, p, v: None if v is None else _duration(c, p, v),
              help="Stop sending after this long: 10s, 5m.")
@click.option("--loop", is_flag=True, help="Go through the selected requests again until "
              "--limit or --duration is reached.")
@click.option("--header", "-H", "headers", multiple=True, callback=_pairs("parse_header"),
              metavar="'NAME: VALUE'", help="Set this header on every request (repeatable).")
@click.option("--set", "settings", multiple=True, callback=_pairs("parse_setting"),
              metavar="NAME=VALUE", help="Fill the {{NAME}} placeholder (a secret the log left "
              "out) with VALUE (repeatable).")
@click.option("--timeout", default=30.0, show_default=True, type=click.FloatRange(min=0.001),
              help="Seconds each request may take.")
@click.option("--check-noise", is_flag=True,
              help="Send each request twice; routes whose answers disagree are reported apart.")
@click.option("--fail-on", "fail_on", multiple=True,
              help="Exit 1 when routes changed: status, body, latency=1.5 (median ratio).")
@click.option("--latency-floor", default=0.01, show_default=True, type=click.FloatRange(min=0),
              help="Seconds a median must grow by, beyond the ratio, to count as slower.")
@click.option("--log-to", type=click.Path(dir_okay=False),
              help="Also log the replayed requests into this log database.")
@click.option("--format", "-f", "fmt", default="text", show_default=True,
              type=click.Choice(["text", "json", "html"]))
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True),
              help="Write the report to this file instead of standard output.")
@click.option("--progress/--no-progress", default=None,
              help="A progress line on standard error (default: when it is a terminal).")
def replay(log: str, target: str | None, app_spec: str | None, since: float | None,
           until: float | None, paths: tuple[str, ...], routes: tuple[str, ...], statuses: list,
           all_methods: bool, speed: float | None, rate: str | None, concurrency: int | None,
           limit: int | None, duration: float | None, loop: bool, headers: list,
           settings: list, timeout: float, check_noise: bool, fail_on: tuple[str, ...],
           latency_floor: float, log_to: str | None, fmt: str, output: str | None,
           progress: bool | None) -> None:
    """Replay logged requests against a build and report per route what changed."""
    import sys

    try:
        import httpx  # noqa: F401  (in the replay extra)
    except ImportError as error:
        raise click.ClickException(
            f"replay needs httpx ({error}): pip install 'asgi-log-to-sqlite[replay]'"
        ) from None
    from . import replay as r
    from .replay.render import render_html, render_json, render_text

    if (target is None) == (app_spec is None):
        raise click.UsageError("give exactly one of --target URL and --app MODULE:ATTR")
    if speed is not None and rate is not None:
        raise click.UsageError("--speed and --rate are two paces: give one")
    if loop and limit is None and duration is None:
        raise click.UsageError("--loop needs a bound: --limit or --duration")
    if since is not None and until is not None and since >= until:
        raise click.UsageError("--since must be earlier than --until")
    try:
        failing = r.parse_fail_on(fail_on)
        pace = (r.FixedRate(r.parse_rate(rate)) if rate is not None
                else r.OriginalPace(speed) if speed is not None else r.AsFastAsAllowed())
    except ValueError as error:
        raise click.BadParameter(str(error)) from None
    selection = r.Selection(since=since, until=until, paths=paths, routes=routes,
                            statuses=statuses, all_methods=all_methods)
    try:
        from .replay.command import run_replay

        report = run_replay(
            log, selection, target=target, app_spec=app_spec, pace=pace,
            concurrency=concurrency, limit=limit, duration=duration, loop=loop,
            planner=r.Planner(dict(settings), headers), timeout=timeout,
            check_noise=check_noise, fail_on=failing, latency_floor=latency_floor,
            log_to=log_to, progress=sys.stderr.isatty() if progress is None else progress,
        )
    except r.ReplayError as error:
        raise click.ClickException(str(error)) from None
    content = {"text": render_text, "json": render_json, "html": render_html}[fmt](report)
    if output:
        try:
            with open(output, "w", encoding="utf-8") as file:
                file.write(content)
        except OSError as error:
            raise click.ClickException(f"cannot write {output}: {error.strerror}") from None
        click.echo(f"Wrote {fmt} replay report to {output}", err=True)
    else:
        click.echo(content, nl=False)
    if report["failures"]:
        names = ", ".join(f"{f['route']} ({f['check']})" for f in report["failures"])
        click.echo(f"replay: changed beyond --fail-on: {names}", err=True)
        sys.exit(1)
    if report["interrupted"]:
        sys.exit(130)


# --- mock and record ----------------------------------------------------------------------
def _run_server(app: object, host: str, port: int, log_level: str) -> None:
    """``app`` under uvicorn until Ctrl-C or SIGTERM; a server that cannot start is one line.

    Without uvicorn's access log: it would print the secrets in query strings that the log
    itself redacts.
    """
    import uvicorn
    from uvicorn.main import STARTUP_FAILURE

    try:
        uvicorn.run(app, host=host, port=port, log_level=log_level, lifespan="on",
                    proxy_headers=False, access_log=False)
    except SystemExit as stop:  # an address in use: uvicorn logged why
        if stop.code != STARTUP_FAILURE:
            raise
        raise click.ClickException("the server did not start (uvicorn's error is above)") from None
    except KeyboardInterrupt:
        pass


def _needs_httpx(what: str) -> None:
    try:
        import httpx  # noqa: F401  (in the replay extra)
    except ImportError as error:
        raise click.ClickException(
            f"{what} needs httpx ({error}): pip install 'asgi-log-to-sqlite[replay]'"
        ) from None


def _body_limit(ctx: click.Context, param: click.Parameter, value: str) -> int:
    from .validators import body_limit

    try:
        return body_limit("--body-limit", value)
    except (TypeError, ValueError) as error:
        raise click.BadParameter(str(error)) from None


_LOG_LEVELS = click.Choice(["critical", "error", "warning", "info", "debug"])


@cli.command()
@click.argument("log", type=click.Path(dir_okay=False))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--cycle/--last", default=True, show_default=True,
              help="Several recordings of one request answer in turn, or always the latest.")
@click.option("--timing", is_flag=True,
              help="Answer at the recorded pace: time to first byte, then each chunk.")
@click.option("--fallback", metavar="URL", help="Proxy unmatched requests to this URL, and "
              "record them into LOG (instead of answering 404).")
@click.option("--set", "settings", multiple=True, callback=_pairs("parse_setting"),
              metavar="NAME=VALUE", help="Fill the {{NAME}} placeholder in recorded responses "
              "(repeatable).")
@click.option("--body-limit", default="1MB", show_default=True, callback=_body_limit,
              help="With --fallback: bodies kept whole up to this size (larger ones are "
              "recorded but cannot be served).")
@click.option("--timeout", default=60.0, show_default=True, type=click.FloatRange(min=0.001),
              help="With --fallback: seconds the upstream may take.")
@click.option("--list", "listing", is_flag=True,
              help="Print the recorded requests and the placeholders, and exit.")
@click.option("--log-level", default="info", show_default=True, type=_LOG_LEVELS)
def mock(log: str, host: str, port: int, cycle: bool, timing: bool, fallback: str | None,
         settings: list, body_limit: int, timeout: float, listing: bool, log_level: str) -> None:
    """Serve the responses recorded in a log: a mock of the logged service, for tests."""
    if fallback is not None:
        _needs_httpx("mock --fallback")
    from .mock import MockError, mock_app, placeholders
    from .mock.summary import listing_lines, placeholder_lines, serving_line

    values = dict(settings)
    try:
        if listing:
            from .mock import load

            for line in listing_lines(load(log)):
                click.echo(line)
            for line in placeholder_lines(placeholders(log), values):
                click.echo(line)
            return
        app = mock_app(log, repeat="cycle" if cycle else "last", timing=timing,
                       fallback=fallback, values=values, body_limit=body_limit, timeout=timeout)
        found = placeholders(log)
    except MockError as error:
        raise _failure(error) from None
    if not app.servable and fallback is None:
        raise click.ClickException(
            f"{log}: no recorded response to serve (log with capture_requests=True and "
            "capture_responses=True, or record with 'asgi-log-to-sqlite record')"
        )
    import logging

    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("mock: %(message)s"))
    requests_log = logging.getLogger("asgi_log_to_sqlite.mock")
    requests_log.addHandler(handler)
    requests_log.setLevel(log_level.upper())
    requests_log.propagate = False
    click.echo(_shown(serving_line(list(app.index), log)), err=True)
    if fallback is not None:
        click.echo(f"Unmatched requests go to {fallback}, and are recorded.", err=True)
    if found:
        for line in placeholder_lines(found, values):
            click.echo(line, err=True)
    _run_server(app, host, port, log_level)


@cli.command()
@click.argument("log", type=click.Path(dir_okay=False))
@click.option("--upstream", required=True, metavar="URL",
              help="The service to record: https://api.example.com.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--body-limit", default="1MB", show_default=True, callback=_body_limit,
              help="Bodies kept whole up to this size (a mock serves only those).")
@click.option("--timeout", default=60.0, show_default=True, type=click.FloatRange(min=0.001),
              help="Seconds the upstream may take to answer (and between chunks).")
@click.option("--option", "-O", "extra", multiple=True, callback=_option_pair,
              metavar="NAME=VALUE", help="Any other middleware option, e.g. -O redact_query=sig.")
@click.option("--log-level", default="info", show_default=True, type=_LOG_LEVELS)
def record(log: str, upstream: str, host: str, port: int, body_limit: int, timeout: float,
           extra: dict, log_level: str) -> None:
    """Record a remote service through a logging reverse proxy, for a mock or a replay."""
    _needs_httpx("record")
    from .record import count_captures, recorder_app, summary

    before: list[int] = []

    def say_what_was_recorded() -> None:
        for line in summary(log, before[0] if before else 0):
            click.echo(_shown(line), err=True)

    try:
        app = recorder_app(upstream, log, body_limit=body_limit, timeout=timeout, options=extra,
                           on_shutdown=say_what_was_recorded)
    except (TypeError, ValueError, OSError) as error:
        raise _failure(error) from None
    before.append(count_captures(log))
    click.echo(_shown(f"Recording {upstream} into {log}: send requests to "
                      f"http://{host}:{port}"), err=True)
    _run_server(app, host, port, log_level)


# --- import ----------------------------------------------------------------------------------
#: Files at least this big get a progress bar (on a terminal).
PROGRESS_BYTES = 4 << 20


@cli.command(name="import")
@click.argument("sources", nargs=-1, required=True,
                type=click.Path(dir_okay=False, allow_dash=True))
@click.argument("log", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["auto", "jsonlines", "combined", "uvicorn"]),
              default="auto", show_default=True,
              help="Read every line in this format (auto: recognised per file).")
@click.option("--keep-health-checks", is_flag=True,
              help="Record health checks and probes instead of only counting them.")
@click.option("--anonymize-ip", is_flag=True,
              help="Truncate client addresses (IPv4 to /24, IPv6 to /48).")
@click.option("--no-client-ip", is_flag=True, help="Do not record client addresses at all.")
@click.option("--redact-query", multiple=True, metavar="KEY",
              help="Also redact this query key's values (name, glob or re:regex; repeatable).")
@click.option("--keep-query", multiple=True, metavar="KEY",
              help="Keep this query key's values although a default rule redacts them.")
@click.option("--exclude", multiple=True, metavar="PATH",
              help="Leave out requests to this path prefix, glob or re:regex (repeatable).")
@click.option("--exclude-user-agent", multiple=True, metavar="AGENT",
              help="Leave out requests from this user agent (substring, glob or re:regex).")
@click.option("--parallel/--no-parallel", default=None,
              help="Parse in a second process [default: for files over 32 MB when a second "
                   "CPU is free].")
def import_command(sources: tuple[str, ...], log: str, fmt: str, keep_health_checks: bool,
                   anonymize_ip: bool, no_client_ip: bool, redact_query: tuple[str, ...],
                   keep_query: tuple[str, ...], exclude: tuple[str, ...],
                   exclude_user_agent: tuple[str, ...], parallel: bool | None) -> None:
    """Import access logs (nginx, Apache, uvicorn, JSON lines; gzip too; - for stdin)."""
    import contextlib
    import re
    import sys

    from .importer import ImportFailed, ImportOptions, import_logs

    options = ImportOptions(
        keep_health_checks=keep_health_checks, anonymize_ip=True if anonymize_ip else None,
        client_ip=not no_client_ip, redact_query=redact_query, keep_query=keep_query,
        exclude=exclude, exclude_user_agents=exclude_user_agent,
        format=None if fmt == "auto" else fmt, parallel=parallel,
    )
    with contextlib.ExitStack() as stack:
        bars: list = []

        def progress(name: str, size: int | None):  # type: ignore[no-untyped-def]
            if bars:
                bars.pop().render_finish()
            if size is None or size < PROGRESS_BYTES or not sys.stderr.isatty():
                return None
            bar = stack.enter_context(click.progressbar(length=size, label=name, file=sys.stderr))
            bars.append(bar)
            return lambda done: bar.update(done - bar.pos)

        try:
            results = import_logs(log, list(sources), options, progress=progress)
        except ImportFailed as error:
            raise _failure(error) from None
        except KeyboardInterrupt:
            raise click.ClickException(
                "interrupted: what was committed stays; import again to go on from there"
            ) from None
    failed = False
    for result in results:
        for line, text in result.failures:
            # A log line may hold anything, terminal control sequences too: shown escaped.
            shown = re.sub(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]",
                           lambda m: f"\\x{ord(m.group()):02x}", text[:200])
            more = "..." if len(text) > 200 else ""
            click.echo(_shown(f"{result.name}:{line}: not parsed: {shown}{more}"), err=True)
        if result.error:
            failed = True
            click.echo(_shown(f"Error: {result.error}"), err=True)
        click.echo(_shown(result.summary()))
    if len(results) > 1:
        rows = sum(r.rows for r in results)
        click.echo(_shown(f"Imported {rows:,} row(s) from {len(results)} sources into {log}"))
    if failed:
        sys.exit(1)
