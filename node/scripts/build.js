#!/usr/bin/env node
// `npm install` / `npm ci` in node/ runs this: it builds the library with
// meson if ../build has none yet (or uses $RATEQUEUE_BUILD), the addon with
// node-gyp against this machine's own Node headers (offline: --nodedir, no
// header download), and the TypeScript into dist/.
'use strict';
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const here = path.resolve(__dirname, '..');
const root = path.resolve(here, '..');
const build = path.resolve(process.env.RATEQUEUE_BUILD || path.join(root, 'build'));

function run(cmd, args, opts = {}) {
  console.error(`ratequeue: ${cmd} ${args.join(' ')}`);
  execFileSync(cmd, args, { stdio: 'inherit', cwd: here, ...opts });
}

function fail(msg) {
  console.error(`ratequeue: ${msg}`);
  process.exit(1);
}

// 1. The library.
if (!fs.existsSync(path.join(build, 'src', 'libratequeue.so')) || !fs.existsSync(path.join(build, 'include'))) {
  if (process.env.RATEQUEUE_BUILD) fail(`no libratequeue.so in $RATEQUEUE_BUILD (${build}/src): build it with meson first`);
  try {
    if (!fs.existsSync(path.join(build, 'build.ninja'))) run('meson', ['setup', build, '--buildtype=release'], { cwd: root });
    run('meson', ['compile', '-C', build, 'ratequeue:shared_library'], { cwd: root });
  } catch (e) {
    fail('building the library needs meson and ninja (bash scripts/install-deps installs them): ' + e.message);
  }
}

// 2. The addon, against the headers of the Node that runs this (no download).
const candidates = [path.resolve(path.dirname(process.execPath), '..'), process.config.variables.node_prefix || ''];
const nodedir = candidates.find((d) => d && fs.existsSync(path.join(d, 'include', 'node', 'node_api.h')));
if (!nodedir) fail(`no Node headers (include/node/node_api.h) under ${candidates.join(' or ')}: install them with Node`);
const gyp = require.resolve('node-gyp/bin/node-gyp.js');
run(process.execPath, [gyp, 'rebuild', `--nodedir=${nodedir}`, '--loglevel=warn'],
    { env: { ...process.env, RATEQUEUE_BUILD: build } });

// 3. The TypeScript.
run(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', here]);
