"""Django's ``asgi.py``, with the log around Django's ASGI handler.

Run from the ``examples`` folder: ``uvicorn django_example.asgi:application``.
"""

import os

from django.core.asgi import get_asgi_application

from asgi_log_to_sqlite import AsgiLogToSqlite

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_example.settings")

# Django answers lifespan scopes with an error; the middleware then answers them itself, so the
# log is still flushed when the server shuts down.
application = AsgiLogToSqlite(get_asgi_application(), os.environ.get("ASGI_LOG_FILE", "log.db"))
