"""Generated from proto/pdfchat/v1 by tools/gen_proto.sh. Do not edit."""
