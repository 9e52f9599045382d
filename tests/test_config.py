"""DATABASE_URL as hosting platforms hand it out: normalised to psycopg 3, or refused by name."""

from __future__ import annotations

import pytest

from app.config import ConfigError, load_config


def database_uri(url: str) -> str:
    return load_config({"DATABASE_URL": url})["SQLALCHEMY_DATABASE_URI"]


@pytest.mark.parametrize(
    ("given", "used"),
    [
        pytest.param(
            "postgres://u:p%40ss@db.example.com:5432/scim",
            "postgresql+psycopg://u:p%40ss@db.example.com:5432/scim",
            id="postgres-heroku-render-fly",
        ),
        pytest.param(
            "postgresql://u:pw@db.example.com/scim?sslmode=require",
            "postgresql+psycopg://u:pw@db.example.com/scim?sslmode=require",
            id="postgresql-without-driver",
        ),
        pytest.param(
            "POSTGRES://u@127.0.0.1:6543/scim",
            "postgresql+psycopg://u@127.0.0.1:6543/scim",
            id="scheme-in-capitals",
        ),
        pytest.param(
            "postgresql+psycopg://u@127.0.0.1/scim",
            "postgresql+psycopg://u@127.0.0.1/scim",
            id="already-psycopg",
        ),
        pytest.param(
            "sqlite:////srv/scim/scim.sqlite3", "sqlite:////srv/scim/scim.sqlite3", id="sqlite"
        ),
        pytest.param("sqlite+pysqlite:///x.sqlite3", "sqlite+pysqlite:///x.sqlite3", id="pysqlite"),
        pytest.param("", "sqlite:///scim.sqlite3", id="unset"),
    ],
)
def test_database_url_is_normalised_to_psycopg_3(given, used):
    assert database_uri(given) == used


def test_a_normalised_postgresql_url_gets_the_postgresql_timeouts():
    options = load_config({"DATABASE_URL": "postgres://u@h/scim"})["SQLALCHEMY_ENGINE_OPTIONS"]
    assert options["connect_args"]["connect_timeout"] == 5


@pytest.mark.parametrize(
    ("url", "named"),
    [
        pytest.param("mysql://u:hunter2@h/scim", "'mysql'", id="another-database"),
        pytest.param(
            "postgresql+psycopg2://u:hunter2@h/scim", "'postgresql+psycopg2'", id="psycopg2"
        ),
        pytest.param("u:hunter2@h:5432/scim", "not a URL", id="no-scheme"),
    ],
)
def test_an_unusable_database_url_stops_start_up_without_echoing_it(url, named):
    with pytest.raises(ConfigError, match="^DATABASE_URL ") as refused:
        database_uri(url)
    message = str(refused.value)
    assert named in message
    assert "hunter2" not in message and "postgresql+psycopg://" in message
