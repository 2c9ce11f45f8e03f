"""What every pdfchat service needs, in one place: settings, logs, identity, errors, the gRPC server
bootstrap and clients, Postgres, JetStream, object storage and Redis."""
