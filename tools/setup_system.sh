#!/usr/bin/env bash
# Installs the Debian packages the suite uses when they are missing: Tesseract (OCR of image-only pages,
# English and simplified Chinese) and, when no Redis answers on 127.0.0.1:6379 and none is configured,
# redis-server; with --tests also Chromium, for the browser test of the web page. Does nothing when all
# are present; without root it only says what is missing.
set -euo pipefail
missing=()
if [[ "${1:-}" == "--tests" ]] && ! command -v chromium >/dev/null 2>&1; then
  missing+=(chromium)
fi
command -v tesseract >/dev/null 2>&1 || missing+=(tesseract-ocr tesseract-ocr-eng)
if command -v tesseract >/dev/null 2>&1 && ! tesseract --list-langs 2>/dev/null | grep -qx chi_sim; then
  missing+=(tesseract-ocr-chi-sim)
elif ! command -v tesseract >/dev/null 2>&1; then
  missing+=(tesseract-ocr-chi-sim)
fi
if [[ -z "${PDFCHAT_REDIS_URL:-}" ]] && ! command -v redis-server >/dev/null 2>&1 \
   && ! (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; then
  missing+=(redis-server)
fi
if [[ ${#missing[@]} -eq 0 ]]; then
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "warning: missing Debian packages (install them as root): ${missing[*]}" >&2
  exit 0
fi
echo "==> installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
