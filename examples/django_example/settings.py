"""Just enough settings for Django's ASGI handler: no database, no apps, no templates."""

import os

# An example only: a real project reads its secret key from the environment.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-a-secret")
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
ROOT_URLCONF = "django_example.urls"
INSTALLED_APPS: list[str] = []
MIDDLEWARE: list[str] = []
DATABASES: dict = {}
USE_TZ = True
LOGGING_CONFIG = None  # keep the example's output quiet; errors still reach the log database
