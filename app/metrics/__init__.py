"""GET /metrics: the API's Prometheus metrics.

- `http.py`: request counts and latencies by route template and status (an ASGI middleware).
- `collector.py`: figures read from the database at scrape time (jobs by status, queue depth,
  live workers, failed jobs by error code).
- `router.py`: the route, its optional bearer token, and `install_metrics(app)`.

With several API processes (`embedtune api --workers N`) set PROMETHEUS_MULTIPROC_DIR to an empty
folder before they start: each process writes its request metrics there and any of them answers
a scrape with the sum. The workers serve their own metrics (worker.telemetry).
"""
