"""The orchestrator: every LLM call of pdfchat goes through it.

It picks a provider (the configured OpenAI-compatible endpoint, or the extractive provider that quotes
the retrieved passages when none is configured or the endpoint fails before its first token), streams
tokens with sequence numbers, and records every request's usage and cost in a per-tenant ledger.
"""
