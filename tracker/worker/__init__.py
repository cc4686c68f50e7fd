"""The worker layer: what a Celery worker process does with a run (claim, train through the
DatabaseSink, finish), the system metrics of its process, and the thin Celery tasks. Only
worker processes import it; it uses tracker.core like any other caller."""
