"""The ingestion service: owns documents, stores their originals and tracks them through the ingest path."""
