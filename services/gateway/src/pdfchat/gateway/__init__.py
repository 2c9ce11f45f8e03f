"""The HTTPS/WebSocket edge of pdfchat: REST /v1, WebSocket /v1/ws, the web page and /metrics.

The gateway owns nothing durable. It authenticates the caller (a bearer JWT), turns each request into
gRPC calls on ingestion, chat and orchestrator with the caller's identity as metadata, and maps gRPC
statuses to HTTP problem+json (see `problems`).
"""
