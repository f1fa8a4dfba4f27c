"""A writer process that reads every frame the app ships and stores nothing.

The ``idle-writer`` variant of ``app.py`` (``run.py --diagnose``) runs it in place of
``python -m asgi_log_to_sqlite.writer_process``: the event loop still encodes, pickles and
ships every record, but no process spends CPU building and storing rows. On a machine whose
cores the server, the load generator and the writer process share, the difference between this
variant and the default one is what the writer's own CPU costs the app.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
import time

from asgi_log_to_sqlite.writer_process import ACK_EVERY, _frame


def main() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stream, out = sys.stdin.buffer, sys.stdout.buffer
    written = 0
    seq = 0
    next_ack = time.monotonic() + ACK_EVERY
    first = True
    while True:
        header = stream.read(4)
        if len(header) < 4:
            break
        body = stream.read(int.from_bytes(header, "big"))
        if first:  # the settings: answer as a real writer does once its sink is open
            first = False
            out.write(_frame(("ready", 0, {"written": 0})))
            out.flush()
            continue
        ack, seq, items, _, _ = pickle.loads(body)
        written += sum(1 for item in items if item[0] != "a")
        if ack or time.monotonic() >= next_ack:
            out.write(_frame(("ack", seq, {"written": written})))
            out.flush()
            next_ack = time.monotonic() + ACK_EVERY
    if seq:
        out.write(_frame(("ack", seq, {"written": written})))
        out.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
