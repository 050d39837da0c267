/**
 * Postgres extensions: which ones must be preloaded (`shared_preload_libraries`, a restart), which
 * Debian package ships each one, and the few queries `pgpilot extensions` runs. The preload list
 * is kept here by hand, because nothing in an extension's control file says that its library must
 * be preloaded (module_pathname only names the library): an extension missing from it would be
 * created without its library loaded, and most of those refuse with a clear error of their own,
 * so the list only has to cover the common ones. Modules that are libraries without an extension
 * (auto_explain, pg_partman_bgw) are preloaded and not created.
 */
import pg from 'pg';
import type { PgClient } from './queries.js';

export interface ExtensionFacts {
  name: string;
  /** Library to add to shared_preload_libraries (null: none needed). */
  preloadLibrary: string | null;
  /** Libraries that must be preloaded with it (pg_stat_kcache needs pg_stat_statements). */
  alsoPreload: readonly string[];
  /** False for a library without an extension (auto_explain): preloaded, never CREATEd. */
  createsExtension: boolean;
  /** Debian package that ships it, for the major version given. */
  debianPackage: string;
  /** Where that package comes from, when not from Debian's own archive. */
  packageSource: string | null;
}

interface KnownExtension {
  preload?: string;
  alsoPreload?: readonly string[];
  moduleOnly?: boolean;
  /** Package name with MAJOR for the postgres major version. */
  package: string;
  source?: string;
}

const PGDG = 'the PostgreSQL apt repository (apt.postgresql.org)';

/** Extensions and modules pgpilot knows by name (anything else: contrib, or a guessed package). */
const KNOWN: Readonly<Record<string, KnownExtension>> = {
  timescaledb: { preload: 'timescaledb', package: 'timescaledb-2-postgresql-MAJOR', source: "TimescaleDB's apt repository (packagecloud.io/timescale/timescaledb); it is not in Debian's archive" },
  pg_stat_statements: { preload: 'pg_stat_statements', package: 'postgresql-MAJOR' },
  auto_explain: { preload: 'auto_explain', moduleOnly: true, package: 'postgresql-MAJOR' },
  pg_cron: { preload: 'pg_cron', package: 'postgresql-MAJOR-cron' },
  pgaudit: { preload: 'pgaudit', package: 'postgresql-MAJOR-pgaudit' },
  pg_partman: { package: 'postgresql-MAJOR-partman' },
  pg_partman_bgw: { preload: 'pg_partman_bgw', moduleOnly: true, package: 'postgresql-MAJOR-partman' },
  pg_stat_kcache: { preload: 'pg_stat_kcache', alsoPreload: ['pg_stat_statements'], package: 'postgresql-MAJOR-pg-stat-kcache' },
  pg_wait_sampling: { preload: 'pg_wait_sampling', package: 'postgresql-MAJOR-pg-wait-sampling' },
  pg_qualstats: { preload: 'pg_qualstats', package: 'postgresql-MAJOR-pg-qualstats' },
  pg_squeeze: { preload: 'pg_squeeze', package: 'postgresql-MAJOR-squeeze', source: PGDG },
  pglogical: { preload: 'pglogical', package: 'postgresql-MAJOR-pglogical' },
  postgis: { package: 'postgresql-MAJOR-postgis-3' },
  postgis_raster: { package: 'postgresql-MAJOR-postgis-3' },
  postgis_topology: { package: 'postgresql-MAJOR-postgis-3' },
  postgis_sfcgal: { package: 'postgresql-MAJOR-postgis-3' },
  postgis_tiger_geocoder: { package: 'postgresql-MAJOR-postgis-3' },
  address_standardizer: { package: 'postgresql-MAJOR-postgis-3' },
  pgrouting: { package: 'postgresql-MAJOR-pgrouting' },
  vector: { package: 'postgresql-MAJOR-pgvector', source: PGDG },
  pg_repack: { package: 'postgresql-MAJOR-repack' },
  hypopg: { package: 'postgresql-MAJOR-hypopg' },
  orafce: { package: 'postgresql-MAJOR-orafce' },
  ip4r: { package: 'postgresql-MAJOR-ip4r' },
  pgtap: { package: 'postgresql-MAJOR-pgtap' },
  rum: { package: 'postgresql-MAJOR-rum' },
  hll: { package: 'postgresql-MAJOR-hll' },
  periods: { package: 'postgresql-MAJOR-periods' },
  plpgsql_check: { package: 'postgresql-MAJOR-plpgsql-check' },
  semver: { package: 'postgresql-MAJOR-semver' },
  pg_similarity: { package: 'postgresql-MAJOR-similarity' },
  pg_hint_plan: { package: 'postgresql-MAJOR-pg-hint-plan', source: PGDG },
};

/**
 * Every library an extension flow (`extensions enable`) may put into `shared_preload_libraries`:
 * the preload libraries of the known extensions above. The agent renders no other library from
 * etcd (src/postgres/parameter-policy.ts): a preload list is code that postgres runs.
 */
export const KNOWN_PRELOAD_LIBRARIES: ReadonlySet<string> = new Set(
  Object.values(KNOWN).flatMap((known) => [...(known.preload === undefined ? [] : [known.preload]), ...(known.alsoPreload ?? [])]),
);

/** Extensions of PostgreSQL's contrib directory: shipped in Debian's postgresql-MAJOR package itself. */
export const CONTRIB_EXTENSIONS: ReadonlySet<string> = new Set(
  ('adminpack amcheck autoinc bloom btree_gin btree_gist citext cube dblink dict_int dict_xsyn earthdistance file_fdw ' +
    'fuzzystrmatch hstore insert_username intagg intarray isn lo ltree moddatetime old_snapshot pageinspect pg_buffercache ' +
    'pg_freespacemap pg_prewarm pg_stat_statements pg_surgery pg_trgm pg_visibility pg_walinspect pgcrypto pgrowlocks ' +
    'pgstattuple plpgsql postgres_fdw refint seg sslinfo tablefunc tcn tsm_system_rows tsm_system_time unaccent uuid-ossp xml2 auto_explain').split(' '),
);

/**
 * GUC prefix of a preloaded library's own settings (`cron.database_name` belongs to pg_cron):
 * such settings are unknown to pg_settings until the library is loaded.
 */
const GUC_PREFIX: Readonly<Record<string, string>> = { pg_cron: 'cron' };

export function gucPrefixOf(library: string): string {
  return GUC_PREFIX[library] ?? library;
}

/** Extension names as pg_available_extensions spells them (letters, digits, `_`, `-`). */
export const EXTENSION_NAME = /^[a-z][a-z0-9_-]{0,62}$/;

export function extensionFacts(name: string, major = 15): ExtensionFacts {
  const known = KNOWN[name];
  const pkg = (known?.package ?? (CONTRIB_EXTENSIONS.has(name) ? 'postgresql-MAJOR' : `postgresql-MAJOR-${name.replace(/_/g, '-')}`)).replace('MAJOR', String(major));
  return {
    name,
    preloadLibrary: known?.preload ?? null,
    alsoPreload: known?.alsoPreload ?? [],
    createsExtension: known?.moduleOnly !== true,
    debianPackage: pkg,
    packageSource: known?.source ?? null,
  };
}

/** Whether the package name is a guess (not a known extension, not contrib). */
export function packageIsGuess(name: string): boolean {
  return KNOWN[name] === undefined && !CONTRIB_EXTENSIONS.has(name);
}

/** One line naming the package to install on every node. */
export function installAdvice(facts: ExtensionFacts, packageGuessed: boolean): string {
  const what = packageGuessed
    ? `probably Debian package ${facts.debianPackage} (find it with: apt-cache search postgresql-${facts.debianPackage.split('-')[1] ?? ''} ${facts.name})`
    : `Debian package ${facts.debianPackage}`;
  const from = facts.packageSource === null ? '' : ` from ${facts.packageSource}`;
  return `install ${what}${from} on every node, then run this again`;
}

/** `shared_preload_libraries` text as a list (comma separated, optionally quoted, whitespace ignored). */
export function parseLibraryList(value: string): string[] {
  return value
    .split(',')
    .map((part) => part.trim().replace(/^"(.*)"$/, '$1').trim())
    .filter((part) => part.length > 0);
}

/** The library's bare name (`$libdir/pg_cron` -> `pg_cron`). */
export function libraryName(entry: string): string {
  return entry.replace(/^\$libdir\//, '').replace(/\.so$/, '');
}

/**
 * `current` with `libraries` appended when missing (by bare name), order kept; null when nothing
 * changes. Citus requires to be listed first, so it goes first.
 */
export function withPreloadLibraries(current: string, libraries: readonly string[]): string | null {
  const list = parseLibraryList(current);
  const present = new Set(list.map(libraryName));
  const missing = libraries.filter((lib) => !present.has(lib));
  if (missing.length === 0) return null;
  const next = [...list, ...missing];
  next.sort((a, b) => Number(libraryName(b) === 'citus') - Number(libraryName(a) === 'citus'));
  return next.join(',');
}

export interface AvailableExtension {
  name: string;
  defaultVersion: string | null;
  installedVersion: string | null;
  comment: string | null;
}

export async function listAvailableExtensions(client: PgClient): Promise<AvailableExtension[]> {
  const result = await client.query<{ name: string; default_version: string | null; installed_version: string | null; comment: string | null }>(
    'SELECT name, default_version, installed_version, comment FROM pg_available_extensions ORDER BY name',
  );
  return result.rows.map((r) => ({ name: r.name, defaultVersion: r.default_version, installedVersion: r.installed_version, comment: r.comment }));
}

/** Whether the server's package library directory has `library` (a module without an extension). */
export async function libraryInstalled(client: PgClient, library: string): Promise<boolean> {
  const bare = libraryName(library);
  const dir = await client.query<{ dir: string }>("SELECT setting AS dir FROM pg_config WHERE name = 'PKGLIBDIR'");
  const pkglibdir = dir.rows[0]?.dir;
  if (pkglibdir === undefined) return false;
  const file = bare.includes('/') ? `${bare}.so` : `${pkglibdir}/${bare}.so`;
  // `.size`, not the whole row: a row IS NOT NULL only when every field is (creation is null on Linux).
  const stat = await client.query<{ found: boolean }>('SELECT (pg_stat_file($1, true)).size IS NOT NULL AS found', [file]);
  return stat.rows[0]?.found === true;
}

/** The server's major version (15 for 15.x). */
export async function serverMajor(client: PgClient): Promise<number> {
  const result = await client.query<{ v: string }>('SHOW server_version_num');
  return Math.floor(Number(result.rows[0]?.v ?? '150000') / 10_000);
}

/** CREATE EXTENSION IF NOT EXISTS (with CASCADE: required extensions too); the installed version. */
export async function createExtension(client: PgClient, name: string): Promise<string | null> {
  await client.query(`CREATE EXTENSION IF NOT EXISTS ${pg.escapeIdentifier(name)} CASCADE`);
  const result = await client.query<{ v: string }>('SELECT extversion AS v FROM pg_extension WHERE extname = $1', [name]);
  return result.rows[0]?.v ?? null;
}
