"""Development only, outside the runtime path: the embedded PostgreSQL and Redis servers and
the launcher behind `make demo` and `make test`. Only manage.py and the launcher use them; the
settings, the web process and the workers never import this package."""
