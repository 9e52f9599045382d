# syntax=docker/dockerfile:1
# SCIM service: wheels built in one stage, a slim non-root runtime in the other; migrations are
# applied at start, then gunicorn runs with gunicorn.conf.py.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /srv/scim
COPY requirements.txt .
RUN pip wheel --wheel-dir wheels -r requirements.txt

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /srv/scim
COPY requirements.txt .
# Installed from the build stage's wheels, which stay out of this image's layers.
RUN --mount=type=bind,from=build,source=/srv/scim/wheels,target=/srv/scim/wheels \
    pip install --no-index --find-links wheels -r requirements.txt

COPY app ./app
COPY migrations ./migrations
COPY wsgi.py gunicorn.conf.py ./

RUN useradd --system --uid 10001 --home-dir /srv/scim scim \
    && mkdir -p /srv/scim/instance \
    && chown scim:scim /srv/scim/instance
USER scim

# Configure with environment variables (see .env.example); DATABASE_URL should point at
# PostgreSQL in production, or at a volume mounted on /srv/scim/instance for SQLite.
# SCIM_WORKERS and SCIM_THREADS size gunicorn; behind a proxy add SCIM_PROXY_HOPS=1.
# On PostgreSQL, DATABASE_URL should name a role that owns no table and neither is a superuser
# nor has BYPASSRLS (deploy/postgres/app-role.sql), so that row-level security keeps tenants
# apart; migrations then need the owner: run `flask db upgrade` in a one-off container given
# MIGRATION_DATABASE_URL, and this image's service with `gunicorn -c gunicorn.conf.py wsgi:app`
# alone (deploy/compose.yaml does both). With one role, the default command below migrates too.
ENV FLASK_APP=wsgi \
    SCIM_BIND=0.0.0.0:8000
EXPOSE 8000

# The slim image has no curl: Python asks /healthz on the port SCIM_BIND names.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; port = os.environ.get('SCIM_BIND', ':8000').rsplit(':', 1)[1]; urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4)"]

# Migrations (as MIGRATION_DATABASE_URL when set, else DATABASE_URL), then the service.
CMD ["sh", "-c", "flask db upgrade && exec gunicorn -c gunicorn.conf.py wsgi:app"]
