'use strict';
// ctest's entry (label node): runs `node --test` over test/*.test.js, or
// skips (exit 77) with the reason when node_modules is not installed.
//   node test/run.js [node --test arguments...]

const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const pkg = path.resolve(__dirname, '..');
for (const dep of ['koffi', '@grpc/grpc-js', '@grpc/proto-loader', 'typescript']) {
  if (!fs.existsSync(path.join(pkg, 'node_modules', dep, 'package.json'))) {
    console.log(`SKIPPED: ${path.join(pkg, 'node_modules', dep)} is missing: ` +
                `run \`npm ci\` in ${pkg} (scripts/setup.sh does it)`);
    process.exit(77);
  }
}
const files = fs.readdirSync(__dirname).filter((f) => f.endsWith('.test.js')).sort()
  .map((f) => path.join(__dirname, f));
const args = ['--test', ...process.argv.slice(2), ...files];
const r = spawnSync(process.execPath, args, { stdio: 'inherit', cwd: pkg });
if (r.error) throw r.error;
process.exit(r.status === null ? 1 : r.status);
