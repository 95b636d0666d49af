#!/usr/bin/env bash
# Optional extra: festival and its Telugu NSK voice, the held-out voice of the synthetic corpus
# (test_festival.jsonl: test sentences in a voice m_A never trained on). Installed only when we are root
# and apt-get exists; any failure is reported in one line and ignored (the corpus is then made without
# that test set). Without `apt-get update` first when that works (measured: 10 s on a Debian 12 machine
# whose package lists were current); with it only when the plain install fails.
PKGS="festival festvox-te-nsk festival-te"
if command -v festival >/dev/null 2>&1 && [ -d /usr/share/festival/voices/telugu ]; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "note: festival not installed (needs root and apt-get); the held-out voice test set is skipped"
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y -qq --no-install-recommends $PKGS >/dev/null 2>&1; then
    apt-get update -qq >/dev/null 2>&1 || true
    apt-get install -y -qq --no-install-recommends $PKGS >/dev/null 2>&1 \
        || echo "note: could not install $PKGS; the held-out voice test set is skipped"
fi
exit 0
