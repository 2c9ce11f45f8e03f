"""Developer tooling: the local stack (`make up`), infrastructure discovery, test fixtures, the LLM simulator."""
