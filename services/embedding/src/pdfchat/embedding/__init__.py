"""The embedding service: EmbeddingService.Embed for queries and batches, and the `jobs.embed` consumer."""
