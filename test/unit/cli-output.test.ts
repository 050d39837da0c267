/**
 * CLI output (src/cli/output.ts): `renderTable` left-aligns every column to its widest cell
 * with two spaces between columns and no trailing blanks; `reportError` prints `error:` and
 * `hint:` lines on stderr (nothing on stdout) and returns the PgpilotError's exit code, while any
 * other error becomes an internal-error line, exit code 70, and a stack only with PGPILOT_DEBUG=1;
 * secrets in messages (`password=...`, postgresql://user:pw@) are redacted before printing.
 */
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { printJson, renderTable, reportError, type Output } from '../../src/cli/output.js';
import { PgpilotError } from '../../src/shared/errors.js';

interface Captured extends Output {
  stdout: string[];
  stderr: string[];
}

function capture(): Captured {
  const stdout: string[] = [];
  const stderr: string[] = [];
  return { stdout, stderr, out: (text) => stdout.push(text), err: (text) => stderr.push(text) };
}

void describe('renderTable', () => {
  void it('pads every column to its widest cell, two spaces apart, without trailing blanks', () => {
    const table = renderTable(
      ['NAME', 'ROLE', 'LAG'],
      [
        ['node1', 'primary', '0'],
        ['node22', 'replica', '1048576'],
      ],
    );
    assert.equal(table, ['NAME    ROLE     LAG', 'node1   primary  0', 'node22  replica  1048576'].join('\n'));
  });

  void it('lines up the start of every column', () => {
    const table = renderTable(['A', 'LONG HEADER', 'C'], [['wide value', 'x', 'y'], ['', 'y', '']]);
    const lines = table.split('\n');
    const starts = (line: string, cell: string) => line.indexOf(cell);
    assert.equal(starts(lines[0] ?? '', 'LONG HEADER'), starts(lines[1] ?? '', 'x'));
    assert.equal(starts(lines[0] ?? '', 'C'), starts(lines[1] ?? '', 'y'));
    for (const line of lines) assert.equal(line, line.trimEnd());
  });

  void it('treats missing cells as empty and renders headers alone for no rows', () => {
    assert.equal(renderTable(['A', 'B'], [['x']]), 'A  B\nx');
    assert.equal(renderTable(['NAME', 'ROLE'], []), 'NAME  ROLE');
  });
});

void describe('printJson', () => {
  void it('prints parseable, indented JSON on stdout', () => {
    const output = capture();
    printJson(output, { a: 1, b: [true] });
    assert.deepEqual(output.stderr, []);
    assert.deepEqual(JSON.parse(output.stdout.join('\n')), { a: 1, b: [true] });
  });
});

void describe('reportError', () => {
  let savedDebug: string | undefined;
  beforeEach(() => {
    savedDebug = process.env['PGPILOT_DEBUG'];
    delete process.env['PGPILOT_DEBUG'];
  });
  afterEach(() => {
    if (savedDebug === undefined) delete process.env['PGPILOT_DEBUG'];
    else process.env['PGPILOT_DEBUG'] = savedDebug;
  });

  void it('prints error and hint lines for a PgpilotError and returns its exit code', () => {
    const output = capture();
    const code = reportError(output, new PgpilotError('NODE_NOT_FOUND', 'no node node9 in cluster demo', { hint: 'nodes: node1, node2', exitCode: 2 }));
    assert.equal(code, 2);
    assert.deepEqual(output.stderr, ['error: no node node9 in cluster demo', 'hint: nodes: node1, node2']);
    assert.deepEqual(output.stdout, []);
  });

  void it('defaults a PgpilotError to exit code 1 and prints no hint line when there is none', () => {
    const output = capture();
    assert.equal(reportError(output, new PgpilotError('TIMEOUT', 'took too long')), 1);
    assert.deepEqual(output.stderr, ['error: took too long']);
  });

  void it('never prints the stack of a PgpilotError, even with PGPILOT_DEBUG=1', () => {
    process.env['PGPILOT_DEBUG'] = '1';
    const output = capture();
    reportError(output, new PgpilotError('INPUT_INVALID', 'bad', { hint: 'fix it' }));
    assert.ok(!output.stderr.some((line) => /\n\s+at /.test(line) || /^\s+at /.test(line)), output.stderr.join('\n'));
  });

  void it('reports a plain Error as an internal error with exit code 70 and no stack', () => {
    const output = capture();
    const code = reportError(output, new TypeError('cannot read properties of undefined'));
    assert.equal(code, 70);
    assert.equal(output.stderr[0], 'error: internal error: cannot read properties of undefined');
    assert.match(output.stderr[1] ?? '', /^hint: .*bug.*PGPILOT_DEBUG=1/);
    assert.equal(output.stderr.length, 2);
    assert.ok(!output.stderr.join('\n').includes(' at '), 'no stack frames');
    assert.deepEqual(output.stdout, []);
  });

  void it('with PGPILOT_DEBUG=0 still prints no stack', () => {
    process.env['PGPILOT_DEBUG'] = '0';
    const output = capture();
    reportError(output, new Error('oops'));
    assert.equal(output.stderr.length, 2);
  });

  void it('with PGPILOT_DEBUG=1 prints the stack of a plain Error after the hint', () => {
    process.env['PGPILOT_DEBUG'] = '1';
    const output = capture();
    const error = new Error('oops');
    assert.equal(reportError(output, error), 70);
    assert.equal(output.stderr.length, 3);
    assert.equal(output.stderr[2], error.stack);
  });

  void it('reports a thrown non-Error value as an internal error', () => {
    const output = capture();
    assert.equal(reportError(output, 'a string was thrown'), 70);
    assert.equal(output.stderr[0], 'error: internal error: a string was thrown');
  });

  void it('redacts secrets in a PgpilotError message', () => {
    const output = capture();
    reportError(output, new PgpilotError('POSTGRES_FAILED', 'connection failed: host=db user=postgres password=secret dbname=postgres'));
    assert.equal(output.stderr[0], 'error: connection failed: host=db user=postgres password=[redacted] dbname=postgres');
    assert.ok(!output.stderr.join('\n').includes('secret'));
  });

  void it('redacts secrets in a plain Error message', () => {
    const output = capture();
    reportError(output, new Error("could not connect to postgresql://postgres:hunter2@127.0.0.1:5432/postgres (password='s3cret x')"));
    const text = output.stderr.join('\n');
    assert.ok(!text.includes('hunter2'), text);
    assert.ok(!text.includes('s3cret'), text);
    assert.match(text, /postgresql:\/\/postgres:\[redacted\]@127\.0\.0\.1:5432/);
  });
});
