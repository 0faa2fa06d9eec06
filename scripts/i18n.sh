#!/usr/bin/env bash
# The site's Chinese catalogue: extract the English msgids, merge them into
# web/translations/zh/LC_MESSAGES/messages.po, and compile messages.mo.
#
#   scripts/i18n.sh            extract + update + compile
#   scripts/i18n.sh compile    compile only (after editing the .po)
#
# tests/web/test_i18n.py fails when a msgid has no Chinese translation or the
# committed .mo is older than the .po.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BIN=${BIN:-.venv/bin}
DIR=web/translations
if [[ "${1:-}" != compile ]]; then
    "$BIN/pybabel" extract -F babel.cfg -k _l -k lazy_gettext --no-location --sort-output \
        --project suyuan --copyright-holder "Suyuan" -o "$DIR/messages.pot" web
    if [[ -f "$DIR/zh/LC_MESSAGES/messages.po" ]]; then
        "$BIN/pybabel" update --no-fuzzy-matching -i "$DIR/messages.pot" -d "$DIR" -l zh
    else
        "$BIN/pybabel" init -i "$DIR/messages.pot" -d "$DIR" -l zh
    fi
fi
"$BIN/pybabel" compile -d "$DIR" -l zh
