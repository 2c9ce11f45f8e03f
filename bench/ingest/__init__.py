"""bench/ingest: end-to-end ingestion throughput of the suite against an in-process baseline (see README.md)."""
