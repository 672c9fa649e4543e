"""Monitoring: the pipeline's Prometheus metrics, its /metrics and /healthz endpoint, and status.

metrics.py    the metric objects and the functions that record them (pure bookkeeping)
liveness.py   "did the loop run recently?" for /healthz
server.py     the HTTP endpoint; prefork workers' multiprocess mode
snapshot.py   queue depths, workers online, limiter state, pending rows (``pipeline status``)
collector.py  the snapshot as scrape-time gauges (the bridge's /metrics)
"""
