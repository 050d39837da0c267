/**
 * `pgpilot users list|create|delete NAME ...`: database roles on the leader.
 * - `list [--json]`: every role except postgres's built-in `pg_*` ones, with the app it belongs to
 *   and a note on pgpilot's own roles.
 * - `create NAME USER [--superuser] [--password-stdin] [--json]`: a login role; the password is
 *   generated (printed once, never stored) unless read from stdin, and reaches the server only as
 *   a SCRAM verifier.
 * - `delete NAME USER --yes [--json]`: ends its sessions, hands what it owns to the cluster
 *   superuser, drops its privileges everywhere, drops it. Refuses without `--yes`, for pgpilot's
 *   own roles, and for a role an attached app uses (`detach` is the way for those).
 */
import { createLoginRole, dropRoleEverywhere, generatePassword, listUsers, roleExists, validateName, type UserRow } from '../../postgres/app-queries.js';
import { listAttachments } from '../../providers/local/app-attachments.js';
import { PgpilotError } from '../../shared/errors.js';
import { clusterRoleNames, withAppContext } from '../../operations/app-context.js';
import { openClusterHandle } from '../../cluster/open-cluster-handle.js';
import { printJson, renderTable, type Output } from '../output.js';

export interface UsersListOptions {
  home: string;
  name: string;
  /** `--context FILE` (else PGPILOT_CONTEXT, else the local cluster). */
  context?: string | undefined;
  json: boolean;
}

export interface UserListEntry extends UserRow {
  /** The attached app using this role, if any. */
  app: string | null;
  /** True for pgpilot's own roles (cluster superuser, replication). */
  managed: boolean;
}

export async function runList(options: UsersListOptions, output: Output): Promise<number> {
  const users = await withAppContext(await openClusterHandle(options), async (ctx): Promise<UserListEntry[]> => {
    const apps = await listAttachments(ctx.dcs, ctx.keys);
    const own = new Set(clusterRoleNames(ctx.secrets));
    return (await listUsers(ctx.client)).map((u) => ({ ...u, app: apps.find((a) => a.user === u.name)?.app ?? null, managed: own.has(u.name) }));
  });
  if (options.json) printJson(output, users);
  else {
    const flags = (u: UserListEntry) =>
      [u.superuser ? 'superuser' : '', u.replication ? 'replication' : '', u.createdb ? 'createdb' : '', u.createrole ? 'createrole' : ''].filter((f) => f.length > 0).join(',') || '-';
    output.out(
      renderTable(
        ['USER', 'LOGIN', 'ATTRIBUTES', 'APP'],
        users.map((u) => [u.name, u.login ? 'yes' : 'no', flags(u), u.app ?? (u.managed ? '(pgpilot)' : '-')]),
      ),
    );
  }
  return 0;
}

export interface UsersCreateOptions {
  home: string;
  name: string;
  /** `--context FILE` (else PGPILOT_CONTEXT, else the local cluster). */
  context?: string | undefined;
  user: string;
  superuser: boolean;
  passwordStdin: boolean;
  json: boolean;
}

export interface UsersIo {
  /** All of stdin as text (for --password-stdin). */
  readStdin(): Promise<string>;
}

export const processIo: UsersIo = {
  readStdin: async () => {
    const chunks: Buffer[] = [];
    for await (const chunk of process.stdin) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer));
    return Buffer.concat(chunks).toString('utf8');
  },
};

/** The password read from stdin (pure): one line, its line ending removed; INPUT_INVALID when empty or multi-line. */
export function passwordFromStdin(text: string): string {
  const password = text.replace(/\r?\n$/, '');
  if (password.length === 0) {
    throw new PgpilotError('INPUT_INVALID', 'no password on stdin', { hint: "pipe it in: printf '%s' \"$PASSWORD\" | pgpilot users create ...", exitCode: 2 });
  }
  if (/[\r\n]/.test(password)) {
    throw new PgpilotError('INPUT_INVALID', 'the password on stdin has more than one line', { hint: 'give exactly one line', exitCode: 2 });
  }
  return password;
}

export async function runCreate(options: UsersCreateOptions, output: Output, io: UsersIo = processIo): Promise<number> {
  const supplied = options.passwordStdin ? passwordFromStdin(await io.readStdin()) : null;
  const password = supplied ?? generatePassword();
  const user = await withAppContext(await openClusterHandle(options), async (ctx) => {
    const name = validateName('user', options.user, clusterRoleNames(ctx.secrets));
    if (await roleExists(ctx.client, name)) {
      throw new PgpilotError('INPUT_INVALID', `user ${name} already exists in ${ctx.cluster}`, {
        hint: `pgpilot users list ${ctx.cluster} shows the existing users`,
        exitCode: 2,
      });
    }
    await createLoginRole(ctx.client, name, password, { superuser: options.superuser });
    return name;
  });
  const shown = supplied === null ? password : null;
  if (options.json) printJson(output, { user, superuser: options.superuser, password: shown });
  else {
    output.out(`created user ${user}${options.superuser ? ' (superuser)' : ''}`);
    if (shown !== null) {
      output.out(`password: ${shown}`);
      output.err('the password is shown only now; pgpilot does not store it');
    }
    output.err(`it may connect to databases that allow PUBLIC and those it is granted (GRANT CONNECT ON DATABASE db TO ${user})`);
  }
  return 0;
}

export interface UsersDeleteOptions {
  home: string;
  name: string;
  /** `--context FILE` (else PGPILOT_CONTEXT, else the local cluster). */
  context?: string | undefined;
  user: string;
  yes: boolean;
  json: boolean;
}

export async function runDelete(options: UsersDeleteOptions, output: Output): Promise<number> {
  if (!options.yes) {
    throw new PgpilotError('CONFIRMATION_REQUIRED', `deleting user ${options.user} ends its sessions and hands what it owns to the cluster superuser`, {
      hint: `add --yes to confirm: pgpilot users delete ${options.name} ${options.user} --yes`,
      exitCode: 2,
    });
  }
  const cleaned = await withAppContext(await openClusterHandle(options), async (ctx) => {
    const name = validateName('user', options.user, clusterRoleNames(ctx.secrets));
    const app = (await listAttachments(ctx.dcs, ctx.keys)).find((a) => a.user === name);
    if (app !== undefined) {
      throw new PgpilotError('INPUT_INVALID', `user ${name} belongs to the attached app ${app.app}`, {
        hint: `detach the app instead: pgpilot detach ${ctx.cluster} --app ${app.app}`,
        exitCode: 2,
      });
    }
    if (!(await roleExists(ctx.client, name))) {
      throw new PgpilotError('INPUT_INVALID', `no user ${name} in ${ctx.cluster}`, {
        hint: `pgpilot users list ${ctx.cluster} shows the existing users`,
        exitCode: 2,
      });
    }
    return dropRoleEverywhere({ client: ctx.client, superuser: ctx.secrets.superuser.name, connectTo: (db) => ctx.connectTo(db) }, name);
  });
  if (options.json) printJson(output, { user: options.user, deleted: true, cleanedDatabases: cleaned });
  else output.out(`deleted user ${options.user}`);
  return 0;
}
