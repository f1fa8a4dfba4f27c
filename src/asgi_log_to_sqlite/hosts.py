"""What kind of host the middleware runs on, and the delivery each one needs.

A server that keeps its process running can leave rows to a writer that commits in batches. Two
kinds of host cannot:

* **AWS Lambda** freezes the whole process the moment the handler returns (a thread or writer
  process mid-batch included) and may throw the frozen container away without warning; Lambda
  sets ``AWS_LAMBDA_FUNCTION_NAME`` in every function's environment. There, each request's row is
  committed before the ASGI call returns to the adapter (``flush="response"``), and the writer
  runs inline: Lambda serves one request at a time per process, so writing on the event loop
  delays nobody, and a cold start spends no time starting a thread or a writer process.
* **Pyodide** (``sys.platform == "emscripten"``, Datasette Lite) cannot start threads or
  processes: the writer runs inline on the event loop, in short slices.
"""

from __future__ import annotations

import os
import sys

__all__ = ["commits_each_response", "on_lambda", "threads_unavailable", "writer_for"]

#: The variable AWS Lambda sets in the environment of every function.
LAMBDA_VARIABLE = "AWS_LAMBDA_FUNCTION_NAME"


def on_lambda() -> bool:
    """True inside an AWS Lambda function (its environment names the function)."""
    return bool(os.environ.get(LAMBDA_VARIABLE))


def threads_unavailable() -> bool:
    """True where no thread or process can start at all (Pyodide)."""
    return sys.platform == "emscripten"


def commits_each_response(flush: str) -> bool:
    """Whether the ``flush`` option (validated) commits each request's row before the ASGI
    call returns: "response" always, "auto" on AWS Lambda, "batch" never."""
    return flush == "response" or (flush == "auto" and on_lambda())


def writer_for(writer: str) -> str:
    """The ``writer`` option with "auto" decided for hosts that need the inline writer."""
    if writer == "auto" and (on_lambda() or threads_unavailable()):
        return "inline"
    return writer
