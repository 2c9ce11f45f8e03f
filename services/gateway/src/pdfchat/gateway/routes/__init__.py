"""HTTP and WebSocket routes; each module is a thin layer over one service's stubs."""
