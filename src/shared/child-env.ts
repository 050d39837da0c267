/**
 * The environment of the data-plane programs pgpilot starts: postgres and its tools (initdb,
 * pg_basebackup, pg_rewind, pg_controldata, ...), HAProxy and PgBouncer. `scrubbedEnv` is the one
 * place it is built; every spawn of those programs passes its result as `env`.
 *
 * Invariants and why:
 * - Allow-list, not deny-list: only PATH, TZ, the locale (LANG, LC_*) and HOME reach the child,
 *   plus the variables pgpilot itself sets (`extra`). The operator's shell may hold cloud
 *   credentials (AWS_*), libpq defaults (PGPASSWORD, PGHOST, PGSSLMODE ...) or anything else; a
 *   data-plane process has no use for them, and postgres would hand them down to every
 *   archive_command and restore_command it runs. Those read what they need from files instead
 *   (the backup store config, mode 0600).
 * - HOME is the home of the OS user the child runs as (postgres, haproxy, or ourselves when not
 *   root), never root's, so nothing the child writes or reads "at home" is root's.
 * - `extra` wins over everything inherited, so pgpilot's explicit choices (LC_ALL=C for parsers,
 *   PGPASSFILE) cannot be overridden by the operator's environment.
 */
import { execFileSync } from 'node:child_process';

export interface ChildEnvOptions {
  /** HOME of the OS user the child runs as (`childHome`); absent or undefined: no HOME at all. */
  home?: string | undefined;
  /** Pass the caller's LANG and LC_* through (default true); false for programs whose output we parse. */
  inheritLocale?: boolean;
  /** The environment to pick from (default process.env; tests inject one). */
  from?: NodeJS.ProcessEnv;
}

const DEFAULT_PATH = '/usr/local/bin:/usr/bin:/bin';

/** Whether an inherited variable may reach a data-plane child (pure). */
export function isPassedThrough(name: string, inheritLocale: boolean): boolean {
  if (name === 'PATH' || name === 'TZ') return true;
  return inheritLocale && (name === 'LANG' || name.startsWith('LC_'));
}

/** The allow-listed environment for a data-plane child (pure given `from`); see the module comment. */
export function scrubbedEnv(extra: Readonly<Record<string, string>> = {}, options: ChildEnvOptions = {}): NodeJS.ProcessEnv {
  const from = options.from ?? process.env;
  const inheritLocale = options.inheritLocale ?? true;
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(from)) {
    if (value !== undefined && isPassedThrough(name, inheritLocale)) env[name] = value;
  }
  env['PATH'] ??= DEFAULT_PATH;
  if (options.home !== undefined) env['HOME'] = options.home;
  return { ...env, ...extra };
}

/** The home directory field of a `getent passwd` line (pure); null when malformed or empty. */
export function homeFromPasswdLine(line: string): string | null {
  const fields = line.trim().split(':');
  const home = fields[5];
  return fields.length >= 7 && home !== undefined && home.length > 0 ? home : null;
}

const homes = new Map<string, string>();

/**
 * The home of OS user `user` (through NSS, so LDAP users work too), cached per process; `/` when
 * the user has none we can find (a program that needs HOME then fails visibly rather than using
 * root's).
 */
export function osUserHome(user: string): string {
  const cached = homes.get(user);
  if (cached !== undefined) return cached;
  let home = '/';
  try {
    home = homeFromPasswdLine(execFileSync('getent', ['passwd', user], { encoding: 'utf8', timeout: 10_000, stdio: ['ignore', 'pipe', 'ignore'] })) ?? '/';
  } catch {
    // no such user or no getent: '/'
  }
  homes.set(user, home);
  return home;
}

/**
 * HOME for a child that runs as OS user `runAs` when we are root (setpriv switches to it), else as
 * ourselves: then our own HOME.
 */
export function childHome(runAs: string, from: NodeJS.ProcessEnv = process.env): string | undefined {
  const root = typeof process.getuid === 'function' && process.getuid() === 0;
  return root ? osUserHome(runAs) : from['HOME'];
}
