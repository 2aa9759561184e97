'use strict';
// index.d.ts compiles under tsc --strict and types the API as used.

const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

test('index.d.ts: test/types-check.ts compiles with tsc --strict', () => {
  const tsc = require.resolve('typescript/bin/tsc', { paths: [path.join(__dirname, '..')] });
  const r = spawnSync(process.execPath, [tsc, '--noEmit', '--strict', '--esModuleInterop', '--module', 'commonjs',
    '--target', 'es2020', '--types', 'node', path.join(__dirname, 'types-check.ts')], { encoding: 'utf8', timeout: 120000 });
  assert.equal(r.error, undefined);
  assert.equal(r.status, 0, `${r.stdout}${r.stderr}`);
});
