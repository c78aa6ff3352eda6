"""WSGI entry for gunicorn: `gunicorn inference.wsgi:app` builds one app per worker."""

from inference.app import create_app

app = create_app()
