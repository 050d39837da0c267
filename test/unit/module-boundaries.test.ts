/**
 * The module boundaries of docs/architecture.md are enforced by a lint rule (eslint.config.js,
 * `no-restricted-imports`): src/cli/, src/proxy/, src/metrics/, src/providers/ and src/state/ never
 * import src/ha/ (the HA loop). This test runs the project's own ESLint config through the ESLint
 * Node API on small pieces of code, so that the rule cannot silently stop working (a renamed
 * folder, a broken glob, a config block that no longer matches): an offending import must be
 * reported, and the allowed ones (src/state/, and src/ha/ from the composition root) must not.
 * Type-aware rules are switched off here (the snippets are not files of the TypeScript project);
 * the import rule needs no type information.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ESLint, type Linter } from 'eslint';
import tseslint from 'typescript-eslint';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const eslint = new ESLint({ cwd: repoRoot, overrideConfig: tseslint.configs.disableTypeChecked as Linter.Config });

/** The messages of the boundary rule for `code` linted as if it were the file `filePath`. */
async function boundaryMessages(code: string, filePath: string): Promise<string[]> {
  const [result] = await eslint.lintText(code, { filePath });
  assert.ok(result !== undefined, 'ESLint returned no result');
  const fatal = result.messages.filter((m) => m.fatal === true);
  assert.deepEqual(fatal, [], `the snippet for ${filePath} did not parse`);
  return result.messages.filter((m) => m.ruleId === 'no-restricted-imports').map((m) => m.message);
}

void describe('module boundaries (eslint no-restricted-imports)', () => {
  const offending: Array<[string, string]> = [
    ['src/cli/commands/x.ts', "export { memberIneligibility } from '../../ha/election.js';\n"],
    ['src/cli/x.ts', "import type { HaLoop } from '../ha/loop.js';\nexport type Loop = HaLoop;\n"],
    ['src/proxy/x.ts', "import type { Observation } from '../ha/observation.js';\nexport type O = Observation;\n"],
    ['src/metrics/x.ts', "import type { LoopSnapshot } from '../ha/loop.js';\nexport type S = LoopSnapshot;\n"],
    ['src/providers/local/x.ts', "import { decide } from '../../ha/decide.js';\nexport const d = decide;\n"],
    ['src/state/x.ts', "import type { Decision } from '../ha/decide.js';\nexport type D = Decision;\n"],
  ];
  for (const [filePath, code] of offending) {
    void it(`reports an import of src/ha/ from ${filePath}`, async () => {
      const messages = await boundaryMessages(code, filePath);
      assert.equal(messages.length, 1, `expected one boundary error for ${filePath}, got ${JSON.stringify(messages)}`);
      assert.match(messages[0] ?? '', /src\/state\//);
    });
  }

  const allowed: Array<[string, string]> = [
    ['src/cli/commands/x.ts', "export { recordEvent } from '../../state/events.js';\n"],
    ['src/proxy/x.ts', "import type { DcsView } from '../state/dcs-view.js';\nexport type V = DcsView;\n"],
    ['src/metrics/x.ts', "import type { AgentSnapshot } from '../state/agent-snapshot.js';\nexport type S = AgentSnapshot;\n"],
    // The composition root wires the HA loop; it may import it.
    ['src/agent/x.ts', "export { HaLoop } from '../ha/loop.js';\n"],
    // A name that merely contains "ha" is not the HA loop.
    ['src/cli/commands/y.ts', "export { sha256 } from '../../shared/hash.js';\n"],
  ];
  for (const [filePath, code] of allowed) {
    void it(`allows ${code.trim().split('\n')[0]} in ${filePath}`, async () => {
      assert.deepEqual(await boundaryMessages(code, filePath), []);
    });
  }
});
