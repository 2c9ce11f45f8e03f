"""Chat service: sessions over a set of documents, grounded answers streamed with citations, replay on
reconnect. `answering` holds the ask pipeline; `server` is the thin gRPC glue around it."""
