"""A writer process that reads every frame the app ships and stores nothing.

The ``idle-writer`` variant of ``app.py`` (``run.py --diagnose``) runs it in place of
``python -m asgi_log_to_sqlite.writer_process``: the event loop still encodes, pickles and
ships every record, but no process spends CPU building and storing rows. On a machine whose
cores the server, the load generator and the writer process share, the difference between this
variant and the default one is what the writer's own CPU costs the app.
"""

from __future__ import annotations

import os
import signal
import sys
import time

from asgi_log_to_sqlite.options import Options
from asgi_log_to_sqlite.writer_process import _frame, _read


def main() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stream, out = sys.stdin.buffer, sys.stdout.buffer
    written = seq = 0

    def answer(kind: str) -> None:
        try:
            out.write(_frame((kind, seq, {"written": written})))
            out.flush()
        except OSError:
            os._exit(0)  # the app is gone: nobody to tell

    settings = _read(stream)
    if settings is None:  # answered as a real writer does once its sink is open
        os._exit(0)
    options = Options.from_kwargs(settings[1])
    answer("ready")
    # Acknowledged when the real writer would commit: every flush_interval, or a full batch.
    next_ack = time.monotonic() + options.flush_interval
    since = 0
    while (message := _read(stream)) is not None:
        ack, seq, records, _, _, _ = message
        written += records
        since += records
        if ack or since >= options.batch_size or time.monotonic() >= next_ack:
            answer("ack")
            next_ack = time.monotonic() + options.flush_interval
            since = 0
    if seq:
        answer("ack")
    os._exit(0)


if __name__ == "__main__":
    main()
