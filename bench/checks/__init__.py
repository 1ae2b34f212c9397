"""Scheduled checks at scale: 100,000 accounts of mixed providers in PostgreSQL, simulators that
answer in 20 ms, real Celery worker and beat processes; compared with the naive design and with
the simulators' raw capacity. Run: `.venv/bin/python -m bench.checks` (see bench/README.md)."""
