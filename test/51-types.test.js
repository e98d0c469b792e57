// The published types as a TypeScript user meets them: test/types/public-api.ts imports everything
// from 'nsbox' (the package's own "exports", so dist/index.d.ts) and is compiled with strict tsc.
// Its @ts-expect-error lines make the check two-sided: a type loosened (a listener taking anything,
// NsboxError['code'] back to plain string, encoding no longer giving strings) fails as surely as a
// type that cannot be imported.
'use strict';
const t = require('tap');
const fs = require('node:fs');
const path = require('node:path');
const { execFileSync } = require('node:child_process');

const root = path.join(__dirname, '..');
const tsc = path.join(root, 'node_modules', 'typescript', 'bin', 'tsc');

function compile(project) {
  try {
    execFileSync(process.execPath, [tsc, '-p', project], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    return '';
  } catch (e) {
    return `${e.stdout}${e.stderr}` || String(e);
  }
}

t.test('the public API type-checks as documented: option and result types importable, events, encoding, error codes', async (t) => {
  t.ok(fs.existsSync(path.join(root, 'dist', 'index.d.ts')), 'dist/index.d.ts is built (npm install / npx tsc -p tsconfig.json)');
  t.equal(compile('test/types/tsconfig.json'), '', 'test/types/public-api.ts compiles with no error');
});

t.test('the type check can fail: a wrong listener, a bad encoding and an unknown export are errors', async (t) => {
  const dir = fs.mkdtempSync(path.join(root, 'test', 'types', '.neg-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const cases = {
    listener: "import { spawn } from 'nsbox';\nspawn({ command: ['true'] }).on('exit', (info: string) => void info);\n",
    encoding: "import { run } from 'nsbox';\nvoid run({ command: ['true'], encoding: 'utf-9' });\n",
    stringOutput: "import { run } from 'nsbox';\nexport async function f(): Promise<Buffer> { return (await run({ command: ['true'], encoding: 'utf8' })).stdout; }\n",
    missingExport: "import type { NoSuchOption } from 'nsbox';\nexport type X = NoSuchOption;\n",
  };
  const base = JSON.parse(fs.readFileSync(path.join(root, 'test', 'types', 'tsconfig.json'), 'utf8'));
  for (const [name, code] of Object.entries(cases)) {
    fs.writeFileSync(path.join(dir, `${name}.ts`), code);
    fs.writeFileSync(path.join(dir, `${name}.json`), JSON.stringify({ ...base, files: [`${name}.ts`] }));
    t.match(compile(path.join(dir, `${name}.json`)), /error TS\d+/, `${name}: tsc reports an error`);
  }
});
