"""How every process serves its metrics (`worker.metrics` holds the families the work counts):
`group` gives the processes of one container one set of numbers, `serve` answers scrapes,
`state` computes the gauges of the database's state cheaply, `celery` wires the worker and beat,
`events` tells what became of processed provider events.

Nothing here imports prometheus_client at import time: `group.start_group` must run first."""
