"""The example endpoints as Django views (Django has no WebSockets without Channels)."""

from django.http import FileResponse, HttpResponse, StreamingHttpResponse
from shared import HELLO, SAMPLE_FILE, send_welcome_email_sync, sse_events, stream_chunks


async def hello(request):
    return HttpResponse(HELLO, content_type="text/plain; charset=utf-8")


async def stream(request):
    # An async iterator: Django's ASGI handler streams it without a thread.
    return StreamingHttpResponse(stream_chunks(), content_type="text/plain")


async def sse(request):
    response = StreamingHttpResponse(sse_events(), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    return response


def file(request):
    return FileResponse(open(SAMPLE_FILE, "rb"), content_type="text/plain")


async def error(request):
    raise RuntimeError("this view always fails")


class WorkAfterResponse(HttpResponse):
    """Django calls ``close()`` once the last body byte has been sent: work placed there runs
    after the response, like Starlette's background tasks."""

    def __init__(self, *args, after=None, **kwargs):
        super().__init__(*args, **kwargs)
        self._after = after

    def close(self):
        super().close()
        if self._after is not None:
            self._after()


async def background(request):
    return WorkAfterResponse(
        "Accepted", status=202, content_type="text/plain", after=send_welcome_email_sync
    )
