// Flat ESLint config: typescript-eslint's recommended type-aware rules plus the project's habits
// (no TS enums/namespaces, no floating promises, no stray console in library code), and the module
// boundaries of docs/architecture.md: the CLI, the providers, the proxy, the metrics and the etcd
// records (src/state/) never import the HA loop (src/ha/); test/unit/module-boundaries.test.ts
// proves the rule still fires.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

// Flat config: a later block that sets no-restricted-imports for the same file REPLACES an earlier
// one, so every boundary block lists every pattern that applies to its files.
const NO_HA = {
  group: ['**/ha/*', '**/ha'],
  message: 'src/ha/ is the HA loop: read etcd records from src/state/, cluster operations from src/operations/ (docs/architecture.md, module boundaries).',
};
const NO_LOCAL_DIRECTORY = [
  {
    group: ['**/providers/local/paths.js'],
    allowImportNames: ['resolveHome'],
    message: 'reach the cluster through a ClusterHandle (src/cluster/open-cluster-handle.ts); only resolveHome may be imported here',
  },
  { group: ['**/providers/local/cluster-store.js'], message: 'reach the cluster through a ClusterHandle (src/cluster/open-cluster-handle.ts): its secrets, topology, etcd and status' },
];

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
    files: ['src/cli/**/*.ts', 'src/proxy/**/*.ts', 'src/metrics/**/*.ts', 'src/providers/**/*.ts', 'src/state/**/*.ts', 'src/cluster/**/*.ts'],
    rules: { 'no-restricted-imports': ['error', { patterns: [NO_HA] }] },
  },
  {
    files: ['eslint.config.js'],
    ...tseslint.configs.disableTypeChecked,
  },
  // ---- Module boundaries: the ClusterHandle (feat/handle, issue 18) ----
  // Cluster commands reach a cluster through a ClusterHandle (src/cluster/), local or remote
  // (--context FILE), never by reading the local cluster directory themselves: no src/cli or
  // src/bin file imports the local provider's paths (except `resolveHome`, the home option) or its
  // cluster store. src/operations/ (shared by the CLI and the REST API) imports nothing of
  // providers/local/ but the /apps/ record schema (app-attachments.js, bound for src/state/), and
  // the remote provider nothing of the local one.
  {
    files: ['src/cli/**/*.ts', 'src/bin/**/*.ts'],
    // Commands that still read the local cluster directory: they only make sense on the machine
    // that runs the cluster, and refuse a remote handle with LOCAL_ONLY (src/cluster/require-local.ts).
    ignores: [
      'src/cli/commands/backup.ts', // backups are taken and read here (an agent REST route later)
      'src/cli/commands/certs.ts', // certs show/rotate: the tls/ directory and its CA key
      'src/cli/commands/cluster-context.ts', // exports a local cluster as a context
      'src/cli/commands/create.ts',
      'src/cli/commands/destroy.ts',
      'src/cli/commands/image.ts', // image show/update: local bin dirs and agent restarts
      'src/cli/commands/monitoring.ts', // --serve/--stop: prometheus under the cluster directory
      'src/cli/commands/pooler.ts', // pooler enable/disable: secrets.json and PgBouncer files
      'src/cli/commands/scale-count.ts',
    ],
    rules: { 'no-restricted-imports': ['error', { patterns: [NO_HA, ...NO_LOCAL_DIRECTORY] }] },
  },
  {
    files: ['src/operations/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              regex: '/providers/(?!local/app-attachments\\.js$)',
              message: 'operations work on a ClusterHandle (src/cluster/cluster-handle.ts), local or remote; they never import a provider',
            },
            { group: ['**/cli/**'], message: 'operations are shared by the CLI and the REST API: no CLI import' },
          ],
        },
      ],
    },
  },
  {
    files: ['src/providers/remote/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', { patterns: [NO_HA, { group: ['**/providers/local/**'], message: 'the remote provider knows nothing of local cluster directories' }] }],
    },
  },
);
