/**
 * `pgpilot extensions list NAME [--database DB] [--json]`: the extensions the leader can install
 * (pg_available_extensions: name, default and installed version, comment) and whether each needs
 * preloading. `pgpilot extensions enable NAME EXT [--database DB] [--yes]`: checks that every
 * running member has the extension's files (else EXTENSION_UNAVAILABLE naming the Debian package to
 * install on every node), adds its library to `shared_preload_libraries` when it needs preloading
 * (the `config update` path: stored in etcd, rolling restart after confirmation), then runs
 * CREATE EXTENSION IF NOT EXISTS in the database on the leader (replicas get it by replication).
 */
import { withAppContext } from '../../operations/app-context.js';
import { openClusterHandle } from '../../cluster/open-cluster-handle.js';
import {
  EXTENSION_NAME,
  createExtension,
  extensionFacts,
  installAdvice,
  libraryInstalled,
  libraryName,
  listAvailableExtensions,
  packageIsGuess,
  parseLibraryList,
  serverMajor,
  withPreloadLibraries,
} from '../../postgres/extensions.js';
import { connectLocal } from '../../postgres/queries.js';
import { dynamicConfigSchema } from '../../config/schema.js';
import { parseJsonOrNull } from '../../shared/json.js';
import type { ProviderDeps } from '../../providers/local/local-provider.js';
import { PgpilotError } from '../../shared/errors.js';
import { printJson, renderTable, type Output } from '../output.js';
import { applyPrepared, prepareChanges, type ParameterOutcome } from './config-parameters.js';

export interface ExtensionsListOptions {
  home: string;
  name: string;
  /** `--context FILE` (else PGPILOT_CONTEXT, else the local cluster). */
  context?: string | undefined;
  database: string;
  json: boolean;
}

export interface ExtensionsEnableOptions {
  home: string;
  name: string;
  /** `--context FILE` (else PGPILOT_CONTEXT, else the local cluster). */
  context?: string | undefined;
  extension: string;
  database: string;
  yes: boolean;
  json: boolean;
  timeoutSeconds: number;
}

function shorten(text: string | null, max: number): string {
  if (text === null) return '';
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

export async function runList(options: ExtensionsListOptions, output: Output): Promise<number> {
  return withAppContext(await openClusterHandle(options), async (ctx) => {
    const client = options.database === 'postgres' ? ctx.client : await ctx.connectTo(options.database);
    try {
      const available = await listAvailableExtensions(client);
      const preloadText = (await client.query<{ v: string }>("SELECT current_setting('shared_preload_libraries') AS v")).rows[0]?.v ?? '';
      const preloaded = new Set(parseLibraryList(preloadText).map(libraryName));
      const rows = available.map((e) => {
        const facts = extensionFacts(e.name);
        return {
          ...e,
          needsPreload: facts.preloadLibrary !== null,
          preloaded: facts.preloadLibrary !== null && preloaded.has(facts.preloadLibrary),
        };
      });
      if (options.json) {
        printJson(output, { cluster: ctx.cluster, database: options.database, sharedPreloadLibraries: [...preloaded], extensions: rows });
        return 0;
      }
      output.out(
        renderTable(
          ['NAME', 'DEFAULT', 'INSTALLED', 'PRELOAD', 'COMMENT'],
          rows.map((r) => [r.name, r.defaultVersion ?? '', r.installedVersion ?? '-', r.needsPreload ? (r.preloaded ? 'loaded' : 'needed') : '', shorten(r.comment, 60)]),
        ),
      );
      output.out(`installed: ${rows.filter((r) => r.installedVersion !== null).length} in database ${options.database}; enable one with: pgpilot extensions enable ${ctx.cluster} EXT`);
      return 0;
    } finally {
      if (client !== ctx.client) await client.end().catch(() => undefined);
    }
  });
}

interface EnablePlan {
  /** --set pairs for the preload change (empty: nothing to change). */
  pairs: Array<[string, string]>;
  createsExtension: boolean;
  preloadLibrary: string | null;
}

/** Checks availability on every running member and the database; what to change. Changes nothing. */
async function planEnable(options: ExtensionsEnableOptions): Promise<EnablePlan> {
  return withAppContext(await openClusterHandle(options), async (ctx) => {
    const major = await serverMajor(ctx.client);
    const facts = extensionFacts(options.extension, major);
    const missingOn: string[] = [];
    for (const member of ctx.status.members.filter((m) => m.role === 'primary' || m.role === 'replica')) {
      const client = await connectLocal({
        ca: ctx.ca,
        host: member.host,
        port: member.port,
        user: ctx.secrets.superuser.name,
        password: ctx.secrets.superuser.password,
        connectTimeoutMs: 5_000,
        applicationName: 'pgpilot-cli',
      });
      try {
        const present = facts.createsExtension
          ? ((await client.query<{ n: string }>('SELECT count(*) AS n FROM pg_available_extensions WHERE name = $1', [options.extension])).rows[0]?.n ?? '0') !== '0'
          : await libraryInstalled(client, facts.preloadLibrary ?? options.extension);
        if (!present) missingOn.push(member.name);
      } finally {
        await client.end().catch(() => undefined);
      }
    }
    if (missingOn.length > 0) {
      throw new PgpilotError('EXTENSION_UNAVAILABLE', `extension ${options.extension} is not installed on ${missingOn.join(', ')}`, {
        hint: installAdvice(facts, packageIsGuess(options.extension)),
      });
    }
    const database = await ctx.client.query('SELECT 1 FROM pg_database WHERE datname = $1', [options.database]);
    if (database.rowCount === 0) {
      throw new PgpilotError('INPUT_INVALID', `no database ${options.database} in ${ctx.cluster}`, {
        hint: `create it with: pgpilot db create ${ctx.cluster} ${options.database}`,
        exitCode: 2,
      });
    }
    const pairs: Array<[string, string]> = [];
    if (facts.preloadLibrary !== null) {
      // Build on what is stored (it may be ahead of a member that did not restart yet), else what
      // runs. When every member already runs with the library, the change plans to nothing.
      const stored = parseJsonOrNull(dynamicConfigSchema, await ctx.dcs.get(ctx.keys.config))?.postgresql.parameters['shared_preload_libraries'];
      const live = (await ctx.client.query<{ v: string }>("SELECT current_setting('shared_preload_libraries') AS v")).rows[0]?.v ?? '';
      const base = stored === undefined ? live : String(stored);
      pairs.push(['shared_preload_libraries', withPreloadLibraries(base, [...facts.alsoPreload, facts.preloadLibrary]) ?? base]);
      if (options.extension === 'pg_cron' && options.database !== 'postgres') pairs.push(['cron.database_name', options.database]);
    }
    return { pairs, createsExtension: facts.createsExtension, preloadLibrary: facts.preloadLibrary };
  });
}

export async function runEnable(options: ExtensionsEnableOptions, deps: ProviderDeps, output: Output): Promise<number> {
  if (!EXTENSION_NAME.test(options.extension)) {
    throw new PgpilotError('INPUT_INVALID', `"${options.extension}" is not an extension name`, { hint: `see pgpilot extensions list ${options.name}`, exitCode: 2 });
  }
  const plan = await planEnable(options);
  let preload: ParameterOutcome | null = null;
  if (plan.pairs.length > 0) {
    const prepared = await prepareChanges({ home: options.home, name: options.name, context: options.context, set: plan.pairs, reset: [] });
    preload = await applyPrepared(prepared, { yes: options.yes, dryRun: false, json: options.json, timeoutSeconds: options.timeoutSeconds }, deps, output);
  }
  let version: string | null = null;
  if (plan.createsExtension) {
    // After a rolling restart the leader may be another node: look it up again.
    version = await withAppContext(await openClusterHandle(options), async (ctx) => {
      const client = options.database === 'postgres' ? ctx.client : await ctx.connectTo(options.database);
      try {
        return await createExtension(client, options.extension);
      } finally {
        if (client !== ctx.client) await client.end().catch(() => undefined);
      }
    });
  }
  if (options.json) {
    printJson(output, { cluster: options.name, extension: options.extension, database: options.database, version, preloadLibrary: plan.preloadLibrary, preload });
  } else if (plan.createsExtension) {
    output.out(`${options.extension} ${version ?? ''} enabled in database ${options.database}${plan.preloadLibrary === null ? '' : ` (${plan.preloadLibrary} preloaded)`}`);
  } else {
    output.out(`${options.extension} is preloaded on every member (a module: there is no CREATE EXTENSION for it)`);
  }
  return 0;
}
