// Flat ESLint config: typescript-eslint's recommended type-aware rules plus the project's habits
// (no TS enums/namespaces, no floating promises, no stray console in library code), and the module
// boundaries of docs/architecture.md: the CLI, the providers, the proxy, the metrics and the etcd
// records (src/state/) never import the HA loop (src/ha/); test/unit/module-boundaries.test.ts
// proves the rule still fires.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'bench/results/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: { allowDefaultProject: ['eslint.config.js'] }, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': ['error', { checksVoidReturn: { arguments: false } }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-restricted-syntax': [
        'error',
        { selector: 'TSEnumDeclaration', message: 'Use a union of string literals instead of an enum.' },
        { selector: 'TSModuleDeclaration[kind="namespace"]', message: 'Use ES modules instead of namespaces.' },
      ],
    },
  },
  {
    files: ['src/cli/**/*.ts', 'src/proxy/**/*.ts', 'src/metrics/**/*.ts', 'src/providers/**/*.ts', 'src/state/**/*.ts'],
    // moves to src/operations/ (issue 18, feat/handle)
    ignores: ['src/providers/local/cluster-status.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['**/ha/*', '**/ha'],
              message: 'src/ha/ is the HA loop: read etcd records from src/state/, cluster operations from src/operations/ (docs/architecture.md, module boundaries).',
            },
          ],
        },
      ],
    },
  },
  {
    files: ['eslint.config.js'],
    ...tseslint.configs.disableTypeChecked,
  },
);
