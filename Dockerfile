# SCIM service: slim Python, non-root, migrations applied at start, then gunicorn.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /srv/scim
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY app ./app
COPY migrations ./migrations
COPY wsgi.py .

RUN useradd --system --uid 10001 --home-dir /srv/scim scim \
    && mkdir -p /srv/scim/instance \
    && chown scim:scim /srv/scim/instance
USER scim

# Configure with environment variables (see .env.example); DATABASE_URL should point at
# PostgreSQL in production, or at a volume mounted on /srv/scim/instance for SQLite.
ENV FLASK_APP=wsgi
EXPOSE 8000
CMD ["sh", "-c", "flask db upgrade && exec gunicorn --bind 0.0.0.0:8000 --workers ${SCIM_WORKERS:-2} --threads ${SCIM_THREADS:-4} --no-control-socket --access-logfile - wsgi:app"]
