"""What gunicorn (and `flask`, through FLASK_APP=wsgi) loads: `gunicorn wsgi:app`."""

import sys

from app import create_app
from app.config import ConfigError

try:
    app = create_app()
except ConfigError as e:
    # A setting that cannot work: say which, in one line, instead of a traceback.
    sys.exit(f"Configuration error: {e}")
