"""A minimal Django project (no database) served through Django's ASGI handler."""
