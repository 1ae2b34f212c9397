"""Pruning a million rows while the ingest is under load: 1,000,000 processed inbox rows past
INBOX_RETENTION are deleted by the retention code (`worker.service.retention`, its batches and
partial index) while `connections ingest --workers 2` takes a constant, paced webhook load; the
ingest's accepted/s and p99 in segments with pruning running and without, side by side, and the
prune rate. Run: `.venv/bin/python -m bench.retention` (see bench/README.md)."""
