"""Access-log formats read by ``import``: what each line says, as the log database stores it.

Three formats, recognised line by line (:func:`detect`):

- **JSON lines** written by this package (:mod:`.jsonlines`), also behind a platform's prefix
  (CloudWatch's ``2026-12-07T10:00:00.000Z {...}``, Kubernetes' ``<time> stdout F {...}``:
  anything before the first ``{``) or inside its envelope (Cloud Logging's ``jsonPayload`` object
  or ``textPayload`` string, Docker's ``{"log": "..."}``, a ``{"message": "..."}`` export);
- **common and combined** log formats (nginx's and Apache's defaults, and nginx's ``main``, which
  adds fields after the user agent: they are ignored), with their escapes (``\\"``, ``\\\\``,
  ``\\xHH``) undone;
- **uvicorn's access lines** (``INFO:     127.0.0.1:52134 - "GET /path?x=1 HTTP/1.1" 200 OK``),
  with or without the level, colours, or a logging prefix holding an ISO 8601 time.

Values come out as the middleware would have stored them: the path percent-decoded but for the
escapes that would change it (``/a%2Fb`` stays apart from ``/a/b``; bytes that are not UTF-8 as
``%XX``), the query string raw with its leading ``?``, the HTTP version
as ASGI spells it (``1.1``, ``2``), ``-`` as NULL. Privacy rules are not applied here (the
importer does that, for every format alike). Parsing works on a chunk of lines at a time and
remembers every distinct raw value it has turned into a stored one: request lines, user agents,
referers and times repeat, and this is what makes a million lines take seconds.
"""

from __future__ import annotations

import calendar
import json
import operator
import re
from collections.abc import Callable, Sequence
from itertools import repeat
from typing import Any

from . import jsonlines
from .raw_path import readable_path

__all__ = ["FORMATS", "LogFormat", "Parsed", "detect", "parse_clf_time"]

#: Longest text kept for a value, as the middleware's default ``max_value_length``.
CAP = 4096
#: Distinct raw values remembered per memo before it starts again (results stay the same).
MEMO_LIMIT = 50_000


class Parsed:
    """The rows of a chunk of lines, column by column, and the lines that did not parse.

    ``columns`` maps ``requests`` column names to equally long lists; ``failed`` holds indexes
    of lines (0-based, within the chunk) that are not of this format. Blank lines are neither.
    """

    __slots__ = ("columns", "failed", "rows")

    def __init__(self, columns: dict[str, list[Any]], failed: list[int]) -> None:
        self.columns = columns
        self.failed = failed
        self.rows = len(next(iter(columns.values()))) if columns else 0


class Memo(dict):  # type: ignore[type-arg]
    """``memo[raw]``: a dict hit in C when seen before, else ``compute(raw)``, remembered."""

    __slots__ = ("compute",)

    def __init__(self, compute: Callable[[Any], Any]) -> None:
        super().__init__()
        self.compute = compute

    def __missing__(self, raw: Any) -> Any:
        value = self.compute(raw)
        if len(self) >= MEMO_LIMIT:
            self.clear()
        self[raw] = value
        return value


def text(value: str | None, cap: int = CAP) -> str | None:
    """Empty as NULL, long values capped (as the middleware stores text)."""
    return value[:cap] if value else None


# ---- escapes and request lines -------------------------------------------------------------------
_ESCAPE = re.compile(r"\\(x[0-9A-Fa-f]{2}|[\"\\nrtbv])")
_SIMPLE_ESCAPES = {'"': b'"', "\\": b"\\", "n": b"\n", "r": b"\r", "t": b"\t", "b": b"\b",
                   "v": b"\v"}


def unescape(value: str) -> str:
    """Undo Apache's and nginx's escaping of a logged value: ``\\"``, ``\\\\``, ``\\xHH`` bytes
    (UTF-8 sequences become their characters again; other bytes stay ``\\xHH``)."""
    if "\\" not in value:
        return value
    out = bytearray()
    position = 0
    for match in _ESCAPE.finditer(value):
        out += value[position : match.start()].encode("utf-8", "surrogatepass")
        escape = match.group(1)
        out += bytes((int(escape[1:], 16),)) if escape[0] == "x" else _SIMPLE_ESCAPES[escape]
        position = match.end()
    out += value[position:].encode("utf-8", "surrogatepass")
    return out.decode("utf-8", "backslashreplace")


#: A byte :func:`unescape` could not decode, as it leaves it (``backslashreplace``).
_LEFT_BYTE = re.compile(rb"\\x([0-9a-f]{2})")


def decode_path(raw: str, latin1: bool = False) -> str | None:
    """A request target's path as the middleware stores a raw path (:mod:`.raw_path`):
    percent-escapes decoded as UTF-8 but for those whose decoding changes the path (``%2F``,
    ``%25``, ...), bytes that are not UTF-8 as ``%XX``. ``latin1``: the text holds the raw
    bytes as latin-1 characters (as uvicorn logs them); otherwise a byte that :func:`unescape`
    left as ``\\xhh`` is that byte again."""
    if "%" not in raw and raw.isascii() and (latin1 or "\\x" not in raw):
        return text(raw)
    data = None
    if latin1:
        try:
            data = raw.encode("latin-1")
        except UnicodeEncodeError:
            data = None
    if data is None:
        data = raw.encode("utf-8", "surrogatepass")
        if not latin1:
            data = _LEFT_BYTE.sub(lambda match: bytes((int(match.group(1), 16),)), data)
    return text(readable_path(data)[0])


_METHOD = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,32}")
_ABSOLUTE = re.compile(r"(https?)://([^/?#]*)(.*)", re.IGNORECASE)
_NO_REQUEST = (None, None, None, None, None, None)
_COMMON_METHODS = frozenset(("GET", "POST", "HEAD", "PUT", "DELETE", "PATCH", "OPTIONS"))
#: Protocols as logged -> the HTTP version as ASGI spells it (and the middleware stores).
_VERSIONS = {"HTTP/1.1": "1.1", "HTTP/1.0": "1.0", "HTTP/2.0": "2", "HTTP/2": "2",
             "HTTP/3.0": "3", "HTTP/3": "3", "HTTP/0.9": "0.9"}


class RequestLines:
    """``requests[line]``: (method, path, query_string, http_version, host, scheme) of a request
    line such as ``GET /a?b=1 HTTP/1.1``, remembered, with each distinct path decoded once.

    ``-`` (nginx: no request was received) and lines that are not a request (a TLS handshake
    sent to the HTTP port) give NULLs: the response is still a row. An absolute target
    (``GET http://example.com/a``, as sent to a proxy) gives the host and scheme too. The query
    string is kept whole (the privacy rules redact it, then cap it).
    """

    def __init__(self, escaped: bool = False) -> None:
        # nginx and Apache write bytes as \\xHH escapes (undone into text first); uvicorn writes
        # them as latin-1 characters.
        self._paths = Memo(decode_path if escaped else lambda raw: decode_path(raw, latin1=True))
        self.lines = Memo(
            (lambda raw: self._parse(unescape(_restore(raw)))) if escaped else self._parse)

    def _parse(self, line: str) -> tuple[str | None, ...]:
        parts = line.split(" ")
        if len(parts) == 3:  # the usual shape, checked cheaply
            method, target, protocol = parts
            version = _VERSIONS.get(protocol)
            if method in _COMMON_METHODS and target[:1] == "/" and version is not None:
                path, _, query = target.partition("?")
                return (method, self._paths[path], "?" + query if query else None, version,
                        None, None)
        method = parts[0]
        if len(parts) < 2 or not _METHOD.fullmatch(method):
            return _NO_REQUEST
        version = None
        if len(parts) > 2 and parts[-1].upper().startswith("HTTP/"):
            protocol = parts.pop()
            version = _VERSIONS.get(protocol.upper()) or text(protocol[5:], 16)
        target = " ".join(parts[1:])
        host = scheme = None
        if not target.startswith("/"):
            absolute = _ABSOLUTE.fullmatch(target)
            if absolute:
                scheme, host, target = (absolute.group(1).lower(), text(absolute.group(2)),
                                        absolute.group(3) or "/")
        path, _, query = target.partition("?")
        return (method, self._paths[path], "?" + query if query else None, version, host, scheme)


# ---- times ---------------------------------------------------------------------------------------
MONTHS = {name: index for index, name in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}
_CLF_TIME = re.compile(
    r"(\d{1,2})/([A-Za-z]{3})/(\d{4}):(\d{2}):(\d{2}):(\d{2})(?:[.,](\d+))?"
    r"(?:\s*(?:([+-])(\d{2}):?(\d{2})|Z|GMT|UTC))?"
)
_ISO_TIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d+))?"
    r"\s*(?:([+-])(\d{2}):?(\d{2})|Z|UTC)?"
)


def _unix(year: int, month: int, day: int, hour: int, minute: int, second: int,
          fraction: str | None, sign: str | None, zone_h: str | None, zone_m: str | None) -> float:
    if not (1 <= month <= 12 and 1 <= day <= 31 and hour < 24 and minute < 60 and second < 61):
        raise ValueError("not a time")
    seconds = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    if sign:
        offset = int(zone_h) * 3600 + int(zone_m) * 60  # type: ignore[arg-type]
        seconds += -offset if sign == "+" else offset
    return float(seconds) + (float("0." + fraction) if fraction else 0.0)


def parse_clf_time(value: str) -> float | None:
    """Unix seconds of ``10/Oct/2000:13:55:36 -0700`` (the offset applied; none means UTC)."""
    match = _CLF_TIME.fullmatch(value.strip())
    if not match:
        return None
    day, month, year, hour, minute, second, fraction, sign, zh, zm = match.groups()
    number = MONTHS.get(month.title())
    if number is None:
        return None
    try:
        return _unix(int(year), number, int(day), int(hour), int(minute), int(second),
                     fraction, sign, zh, zm)
    except (ValueError, OverflowError):
        return None


class ClfTimes(Memo):
    """``times[raw]``: :func:`parse_clf_time` of a time, remembered; a time not seen before in
    the usual layout (``10/Oct/2000:13:55:36 -0700``) costs a lookup of its hour and two ints,
    since in a log nearly every second is new but hours repeat."""

    __slots__ = ("_hours",)

    def __init__(self) -> None:
        super().__init__(parse_clf_time)
        self._hours = Memo(parse_clf_time)

    def __missing__(self, raw: str) -> float | None:
        if len(raw) == 26 and raw[14] == ":" and raw[17] == ":" and raw[20] == " ":
            hour = self._hours[raw[:14] + ":00:00" + raw[20:]]
            minutes, seconds = raw[15:17], raw[18:20]
            if hour is not None and minutes.isdigit() and seconds.isdigit():
                value = hour + (int(minutes) * 60 + int(seconds))
                if int(minutes) < 60 and int(seconds) < 61:
                    if len(self) >= MEMO_LIMIT:
                        self.clear()
                    self[raw] = value
                    return value
        return super().__missing__(raw)


def parse_iso_time(value: str) -> float | None:
    """Unix seconds of an ISO 8601 time such as ``2026-12-07 10:00:00,123`` (no offset: UTC)."""
    match = _ISO_TIME.match(value)
    if not match:
        return None
    year, month, day, hour, minute, second, fraction, sign, zh, zm = match.groups()
    try:
        return _unix(int(year), int(month), int(day), int(hour), int(minute), int(second),
                     fraction, sign, zh, zm)
    except (ValueError, OverflowError):
        return None


# ---- the formats ---------------------------------------------------------------------------------
class LogFormat:
    """One format: whether a line is of it, and the rows of a chunk of lines (the lines joined
    by ``\n``, without a last one: splitting is left to formats that need it)."""

    name = ""

    def matches(self, line: str) -> bool:
        raise NotImplementedError

    def parse(self, chunk: str) -> Parsed:
        raise NotImplementedError

    @staticmethod
    def parse_lines(chunk: str, row: Callable[[str], tuple[Any, ...] | None],
                    names: Sequence[str]) -> Parsed:
        """The rows of a chunk read line by line: ``row`` gives a line's values (in the order
        of ``names``), or None for a line that is not of this format."""
        rows = []
        failed = []
        for number, line in enumerate(chunk.split("\n")):
            values = row(line)
            if values is None:
                if line.strip():
                    failed.append(number)
                continue
            rows.append(values)
        if not rows:
            return Parsed({}, failed)
        columns = map(list, zip(*rows, strict=True))
        return Parsed(dict(zip(names, columns, strict=True)), failed)


# A quoted field with its escapes: the loop unrolled, which Python's re runs far faster than an
# alternation per character. Nothing in it crosses a line end.
_QUOTED = r'"([^"\\\n]*(?:\\.[^"\\\n]*)*)"'
_CLF = (
    r"(\S+) \S+ (\S+) \[([^\]\n]+)\] " + _QUOTED + r" ([0-9]{3}|-) ([0-9]+|-)"
    r"(?: " + _QUOTED + r" " + _QUOTED + r")?[^\n]*"
)
# What is left of each line once its quoted fields are cut out, for lines with more after their
# last quoted field: client, user, and the time in its usual layout (``[10/Oct/2000:13:55:36``
# and ``-0700]``); common format lines (two quotes) also keep their status and size there.
_SKELETON = r"^(\S+) \S+ (\S+) (\[\d\d/[A-Za-z]{3}/\d{4}:\d\d:\d\d:\d\d) ([+-]\d{4}\]) "
_SKELETON_COMBINED = re.compile(_SKELETON + r"[^\n]*$", re.MULTILINE)
_SKELETON_COMMON = re.compile(_SKELETON + r" ([0-9]{3}|-) ([0-9]+|-)[^\n]*$", re.MULTILINE)
# Stand-ins for \\ and \" while a chunk is cut at its quotes (absent from the chunk: checked).
_BACKSLASH, _QUOTE = "\x01", "\x02"


_DASH_AS_ZERO = {"-": "0"}


def _restore(raw: str) -> str:
    if _BACKSLASH in raw or _QUOTE in raw:
        return raw.replace(_BACKSLASH, "\\\\").replace(_QUOTE, '\\"')
    return raw


class CommonLogFormat(LogFormat):
    """nginx's and Apache's common and combined formats (%h %l %u %t "%r" %>s %b "%{Referer}i"
    "%{User-agent}i"): client, user, time, request line, status, body bytes, referer, agent.

    Body bytes written as ``-`` (Apache's ``%b`` for an empty body) are stored as 0, as that is
    what the dash means. The remote user goes to ``actor``.

    A chunk is read in one of two ways. The fast one cuts the whole chunk at its quotes with one
    ``str.split``, then what is between the quoted fields at spaces (or with a small pattern
    when more follows the last one), and turns each column into values with C-level ``map``
    over memos: no Python code runs per line, and no regular expression walks the long quoted
    values. It applies when every line has the same number of quotes (2, 6 or 8: common,
    combined, combined plus one more quoted field such as nginx's ``main``) and its times have
    the usual layout; any other chunk is matched line by line, with the same results.
    """

    name = "combined"

    def __init__(self) -> None:
        self._line = re.compile(_CLF)
        self._times = ClfTimes()
        # "[10/Oct/2000:13:" + "-0700]" -> the hour's unix seconds; "55:36" -> 3336.0
        self._hours = Memo(_hour_start)
        self._minutes = Memo(_minutes_seconds)
        self._requests = RequestLines(escaped=True).lines
        self._quoted = Memo(lambda raw: None if raw == "-" else text(unescape(_restore(raw))))
        self._referers = Memo(lambda raw: None if raw == "-" else unescape(_restore(raw)) or None)
        self._users = Memo(lambda raw: None if raw == "-" else text(unescape(_restore(raw)), 200))
        self._clients = Memo(lambda raw: None if raw == "-" else text(raw, 200))
        self._numbers = Memo(_status)

    def matches(self, line: str) -> bool:
        return self._line.fullmatch(line) is not None

    def parse(self, chunk: str) -> Parsed:
        fields = self._cut(chunk)
        failed: list[int] = []
        if fields is None:
            fields, failed = self._match_lines(chunk)
            if fields is None:
                return Parsed({}, failed)
        clients, users, starts, requests, statuses, sizes, referers, agents = fields
        methods, paths, queries, versions, hosts, schemes = zip(
            *map(self._requests.__getitem__, requests), strict=True)
        columns = {
            "client_ip": list(map(self._clients.__getitem__, clients)),
            "actor": list(map(self._users.__getitem__, users)),
            "start": list(starts),
            "method": list(methods),
            "path": list(paths),
            "query_string": list(queries),
            "http_version": list(versions),
            "host": list(hosts),
            "scheme": list(schemes),
            "http_status": list(statuses),
            "body_size": list(sizes),
            "referer": list(map(self._referers.__getitem__, referers)),
            "user_agent": list(map(self._quoted.__getitem__, agents)),
        }
        return Parsed(columns, failed)

    def _cut(self, chunk: str) -> tuple[Sequence[Any], ...] | None:
        """The fields of every line by the fast way, or None when it does not apply."""
        if '\\"' in chunk:
            # An escaped quote is not a field's end: hide it behind a stand-in the memos put
            # back (and escaped backslashes first, where one comes before a field's end).
            if _BACKSLASH in chunk or _QUOTE in chunk:
                return None
            if '\\\\"' in chunk:
                chunk = chunk.replace("\\\\", _BACKSLASH)
            chunk = chunk.replace('\\"', _QUOTE)
        lines = chunk.count("\n") + 1
        first = chunk.find("\n")
        quotes = chunk.count('"', 0, first if first >= 0 else len(chunk))
        if quotes not in (2, 6, 8):
            return None
        pieces = chunk.split('"')
        if len(pieces) != quotes * lines + 1:
            return None
        # Each line has exactly ``quotes`` quotes when every line end falls between the last
        # quote of a line and the first of the next: one in each such piece.
        joints = pieces[0::quotes]
        ends = list(map(str.count, joints, repeat("\n")))
        if ends[0] or ends[-1] or ends.count(1) != lines - 1 or sum(ends) != lines - 1:
            return None
        requests = pieces[1::quotes]
        if quotes == 2:
            referers = agents = ["-"] * lines
        else:
            referers, agents = pieces[3::quotes], pieces[5::quotes]
            if pieces[4::quotes].count(" ") != lines:
                return None
        skeletons = "".join(joints)
        fields = self._split_skeletons(skeletons, quotes, lines)
        if fields is None:
            fields = self._match_skeletons(skeletons, quotes, lines)
        if fields is None:
            return None
        clients, users, starts, statuses, sizes = fields
        if quotes != 2:
            middles = " ".join(pieces[2::quotes]).split()
            if len(middles) != 2 * lines:
                return None
            statuses, sizes = middles[0::2], middles[1::2]
        statuses = list(map(self._numbers.__getitem__, statuses))
        if _INVALID in statuses:
            return None
        try:
            # Sizes rarely repeat: no memo; "-" (an empty body) read as 0.
            sizes = list(map(int, map(_DASH_AS_ZERO.get, sizes, sizes)))
        except ValueError:
            return None
        return clients, users, starts, requests, statuses, sizes, referers, agents

    def _split_skeletons(self, skeletons: str, quotes: int, lines: int) -> tuple[Any, ...] | None:
        """Client, user, start (and status and size, in common format) of every line, split at
        spaces: lines whose time has the usual layout, ``[10/Oct/2000:13:55:36 -0700]``."""
        width = 7 if quotes == 2 else 5
        tokens = skeletons.split()
        if len(tokens) != width * lines:
            return None
        stamps, zones = tokens[3::width], tokens[4::width]
        if set(map(len, stamps)) != {21} or set(map(len, zones)) != {6}:
            return None
        hours = map(operator.getitem, stamps, repeat(slice(0, 16)))
        bases = list(map(self._hours.__getitem__, map(operator.add, hours, zones)))
        offsets = list(map(self._minutes.__getitem__,
                           map(operator.getitem, stamps, repeat(slice(16, 21)))))
        if None in bases or None in offsets:
            return None
        starts = list(map(operator.add, bases, offsets))
        statuses = tokens[5::width] if quotes == 2 else None
        sizes = tokens[6::width] if quotes == 2 else None
        return tokens[0::width], tokens[2::width], starts, statuses, sizes

    def _match_skeletons(self, skeletons: str, quotes: int, lines: int) -> tuple[Any, ...] | None:
        """The same by a pattern, for lines with more after their quoted fields."""
        skeleton = _SKELETON_COMMON if quotes == 2 else _SKELETON_COMBINED
        heads = skeleton.findall(skeletons)
        if len(heads) != lines:
            return None
        statuses = sizes = None
        if quotes == 2:
            clients, users, stamps, zones, statuses, sizes = zip(*heads, strict=True)
        else:
            clients, users, stamps, zones = zip(*heads, strict=True)
        hours = map(operator.getitem, stamps, repeat(slice(0, 16)))
        bases = list(map(self._hours.__getitem__, map(operator.add, hours, zones)))
        offsets = list(map(self._minutes.__getitem__,
                           map(operator.getitem, stamps, repeat(slice(16, 21)))))
        if None in bases or None in offsets:
            return None
        return clients, users, list(map(operator.add, bases, offsets)), statuses, sizes

    def _match_lines(self, chunk: str) -> tuple[tuple[Sequence[Any], ...] | None, list[int]]:
        """The fields of the lines that match, one line at a time; indexes of those that do
        not."""
        found = []
        failed = []
        match = self._line.fullmatch
        times = self._times
        for number, line in enumerate(chunk.split("\n")):
            hit = match(line)
            if hit is not None:
                client, user, stamp, request, status, size, referer, agent = hit.groups()
                start = times[stamp]
                if start is not None:
                    # A common-format line has neither quoted field: "-", as the log says.
                    found.append((client, user, start, request, self._numbers[status],
                                  0 if size == "-" else int(size),
                                  "-" if referer is None else referer,
                                  "-" if agent is None else agent))
                    continue
            if line.strip():
                failed.append(number)
        if not found:
            return None, failed
        return tuple(zip(*found, strict=True)), failed


def _minutes_seconds(raw: str) -> float | None:
    """Seconds since the hour of ``MM:SS``."""
    if len(raw) != 5 or raw[2] != ":" or not (raw.isascii() and raw[:2].isdigit()
                                               and raw[3:].isdigit()):
        return None
    minutes, seconds = int(raw[:2]), int(raw[3:])
    return float(minutes * 60 + seconds) if minutes < 60 and seconds < 61 else None


def _hour_start(raw: str) -> float | None:
    """Unix seconds of the hour in ``[10/Oct/2000:13:`` + ``-0700]``."""
    if len(raw) != 22 or raw[0] != "[" or raw[15] != ":" or raw[-1] != "]":
        return None
    return parse_clf_time(raw[1:15] + ":00:00 " + raw[16:21])


#: A status that is not one (the line is then read by the pattern, which says so).
_INVALID = object()


def _status(raw: str) -> Any:
    if raw == "-":
        return None
    return int(raw) if len(raw) == 3 and raw.isascii() and raw.isdigit() else _INVALID


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_UVICORN = re.compile(r'(\S*) - "(.*)" (\d{3})(?: [^"]*)?')
_LEVEL = re.compile(r"(?:^|[\s\[|])(?:TRACE|DEBUG|INFO|WARNING|ERROR|CRITICAL)\b")


class UvicornFormat(LogFormat):
    """uvicorn's access lines: ``INFO:     127.0.0.1:52134 - "GET /a?b=1 HTTP/1.1" 200 OK``.

    The level, ANSI colours and a logging prefix before the client are optional; a time in that
    prefix (``2026-12-07 10:00:00,123``, ISO 8601, an offset if present, else read as UTC) is the
    request's ``start``. uvicorn's default lines carry no time: ``start`` is NULL then.
    """

    name = "uvicorn"

    def __init__(self) -> None:
        self._requests = RequestLines().lines
        self._prefixes = Memo(self._prefix_time)

    def _split(self, line: str) -> tuple[Any, ...] | None:
        if "\x1b" in line:
            line = _ANSI.sub("", line)
        line = line.rstrip()
        match = _UVICORN.search(line)
        if match is None or match.end() != len(line):
            return None
        prefix = line[: match.start()]
        start = None
        if prefix.strip():
            start = self._prefixes[prefix]
            if start is False:
                return None
        client, request, status = match.groups()
        return (client, start, request, status)

    @staticmethod
    def _prefix_time(prefix: str) -> float | bool | None:
        """The time in a logging prefix; False when the prefix is not a logging prefix."""
        if '"' in prefix or not _LEVEL.search(prefix):
            return False
        found = _ISO_TIME.search(prefix)
        return parse_iso_time(found.group(0)) if found else None

    def matches(self, line: str) -> bool:
        return self._split(line) is not None

    def _row(self, line: str) -> tuple[Any, ...] | None:
        split = self._split(line)
        if split is None:
            return None
        client, start, request, status = split
        host, _, port = client.rpartition(":")
        if not (host and port.isdigit()):
            host = client
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        method, path, query, version, target_host, scheme = self._requests[request]
        return (start, method, path, query, version, target_host, scheme, int(status),
                text(host, 200))

    def parse(self, chunk: str) -> Parsed:
        return self.parse_lines(chunk, self._row, _UVICORN_COLUMNS)


_UVICORN_COLUMNS = ("start", "method", "path", "query_string", "http_version", "host", "scheme",
                    "http_status", "client_ip")


#: Envelope keys whose value holds the line a platform received from the app.
_TEXT_ENVELOPES = ("textPayload", "log", "message", "msg")


class JsonLinesFormat(LogFormat):
    """Rows written by :func:`.jsonlines.encode`, with a platform's prefix or envelope."""

    name = "jsonlines"

    def _row(self, line: str, depth: int = 0) -> tuple[Any, ...] | None:
        if jsonlines.MARKER not in line or depth > 3:
            return None
        start = line.find("{")
        if start < 0:
            return None
        try:
            document, _ = _decoder.raw_decode(line, start)
        except ValueError:
            return None
        if not isinstance(document, dict):
            return None
        if jsonlines.is_ours(document):
            return _decoded(document)
        payload = document.get("jsonPayload")
        if isinstance(payload, dict) and jsonlines.is_ours(payload):
            return _decoded(payload)
        for key in _TEXT_ENVELOPES:
            inner = document.get(key)
            if isinstance(inner, str):
                return self._row(inner, depth + 1)
            if isinstance(inner, dict) and jsonlines.is_ours(inner):
                return _decoded(inner)
        return None

    def matches(self, line: str) -> bool:
        return self._row(line) is not None

    def parse(self, chunk: str) -> Parsed:
        return self.parse_lines(chunk, self._row, jsonlines.COLUMNS)


def _decoded(document: dict[str, Any]) -> tuple[Any, ...] | None:
    """The row of one of our objects; None where a value is of the wrong kind."""
    try:
        return jsonlines.decode_object(document)
    except ValueError:
        return None


_decoder = json.JSONDecoder()

#: The formats in the order :func:`detect` tries them.
FORMATS: tuple[type[LogFormat], ...] = (JsonLinesFormat, CommonLogFormat, UvicornFormat)


def detect(line: str, formats: Sequence[LogFormat]) -> LogFormat | None:
    """The first of ``formats`` that ``line`` is written in."""
    for candidate in formats:
        if candidate.matches(line):
            return candidate
    return None
