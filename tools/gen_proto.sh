#!/usr/bin/env bash
# Generates Python, gRPC and .pyi stubs from proto/ into OUT (default: libs/common/src).
# The generated package mirrors the proto package: pdfchat.v1.<file>_pb2.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-libs/common/src}"
PY="${PY:-.venv/bin/python}"
BIN="$(dirname "$PY")"
rm -rf "$OUT/pdfchat/v1"
mkdir -p "$OUT/pdfchat/v1"
"$PY" -m grpc_tools.protoc -I proto \
  --python_out="$OUT" --grpc_python_out="$OUT" \
  --plugin=protoc-gen-mypy="$BIN/protoc-gen-mypy" --mypy_out="$OUT" \
  --plugin=protoc-gen-mypy_grpc="$BIN/protoc-gen-mypy_grpc" --mypy_grpc_out="$OUT" \
  proto/pdfchat/v1/*.proto
printf '"""Generated from proto/pdfchat/v1 by tools/gen_proto.sh. Do not edit."""\n' > "$OUT/pdfchat/v1/__init__.py"
