#!/usr/bin/env bash
# System packages reporter needs beyond Python: Noto Sans and Noto Sans Symbols (Latin text and
# arrows in PDFs and charts; small faces where the 19 MB CJK one would otherwise be subset for
# every document; both in fonts-noto-core), Noto CJK
# fonts (Chinese text), Pango and HarfBuzz subsetting for WeasyPrint, poppler-utils (pdftoppm)
# for the PDF tests.
# Installs them with apt-get when run as root; otherwise prints the exact command.
set -euo pipefail
missing=()
fonts=$(fc-list 2>/dev/null || true)   # captured first: grep -q closing the pipe early trips pipefail
grep -qi "Noto Sans CJK" <<<"$fonts" || missing+=(fonts-noto-cjk)
grep -q "NotoSans-Regular" <<<"$fonts" && grep -q "NotoSansSymbols-Regular" <<<"$fonts" \
  || missing+=(fonts-noto-core)
command -v fc-list >/dev/null || missing+=(fontconfig)
command -v pdftoppm >/dev/null || missing+=(poppler-utils)
libs=$(ldconfig -p 2>/dev/null || true)
grep -q libpango-1.0 <<<"$libs" || missing+=(libpango-1.0-0 libpangoft2-1.0-0)
# HarfBuzz subsetting: without it WeasyPrint subsets the CJK font with fontTools, ~3 s per face.
grep -q libharfbuzz-subset <<<"$libs" || missing+=(libharfbuzz-subset0)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  echo "installing system packages: ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null \
    || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null; }
else
  echo "missing system packages; install them with:" >&2
  echo "  sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
