import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import vm from 'node:vm';

import { build, outputFile } from '../../static/build.mjs';
import * as module from '../../static/indox-stream.js';

const checkedIn = readFileSync(outputFile, 'utf8');

function evaluate(source) {
  const context = vm.createContext({});
  vm.runInContext(source, context, { filename: 'indox-stream.global.js' });
  return context;
}

test('the checked-in global build is what build.mjs makes now', () => {
  assert.equal(checkedIn, build(), 'run: node static/build.mjs');
});

test('build.mjs --check agrees', () => {
  const script = new URL('../../static/build.mjs', import.meta.url);
  execFileSync(process.execPath, [script.pathname, '--check'], { stdio: 'pipe' });
});

test('the global build exposes the same names as the module', () => {
  const { IndoxStream } = evaluate(checkedIn);
  assert.deepEqual(Object.keys(IndoxStream).sort(), Object.keys(module).sort());
  for (const name of Object.keys(module)) assert.equal(typeof IndoxStream[name], typeof module[name], name);
});

test('the global build works and leaks nothing else', () => {
  const context = evaluate(checkedIn);
  assert.deepEqual(Object.keys(context), ['IndoxStream']);
  const events = [];
  context.IndoxStream.createParser({ onEvent: (event) => events.push(event.data) }).feed('data: a\r\ndata: b\r\n\r\n');
  assert.deepEqual(events, ['a\nb']);
});

test('build.mjs refuses export forms it cannot rewrite', () => {
  assert.throws(() => build('const a = 1;\nexport { a };\n'), /only handles/);
  assert.throws(() => build("import x from './x.js';\n"), /only handles/);
});
