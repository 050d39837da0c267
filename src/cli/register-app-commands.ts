/**
 * Registers the app workflow commands on the program: `attach`, `detach`, `users list|create|delete`,
 * `db list|create` and `import` (docs/apps.md). Each command only maps its flags to the options of
 * one module in src/cli/commands/; src/bin/cli.ts calls `registerAppCommands(program, ctx)`.
 */
import type { Command } from 'commander';
import { resolveHome } from '../providers/local/paths.js';
import * as attachCommand from './commands/attach.js';
import * as detachCommand from './commands/detach.js';
import * as usersCommand from './commands/users.js';
import * as dbCommand from './commands/db.js';
import * as importCommand from './commands/import.js';
import type { ContextOption, HomeOption, ProgramContext } from './program-helpers.js';

interface JsonOption {
  json?: boolean;
}

export function registerAppCommands(program: Command, ctx: ProgramContext): void {
  const { wrap, homeOption, contextOption, examples, output, parseInteger } = ctx;

  program
    .command('attach')
    .description("give an app its own private database and login role, and print its DATABASE_URL (the password is shown once)")
    .argument('<name>', 'cluster name')
    .requiredOption('--app <app>', 'app name (lower-case letters, digits, _ and -)')
    .option('--database-name <db>', 'database to create (default: the app name, with - turned into _)')
    .option('--user <user>', 'login role to create (default: the app name, with - turned into _)')
    .option('--env-file <path>', 'also write DATABASE_URL=... into this file (created or updated, mode 0600)')
    .option('--json', 'print app, database, user and databaseUrl as JSON')
    .addOption(homeOption())
    .addOption(contextOption())
    .addHelpText(
      'after',
      examples(
        'pgpilot attach demo --app shop',
        'pgpilot attach demo --app blog --database-name blog_prod --user blog_web --env-file .env',
        'pgpilot attach demo --app shop --json | jq -r .databaseUrl',
      ) + '\nThe database is private to the role (CONNECT revoked from PUBLIC). See docs/apps.md.\n',
    )
    .action(
      wrap(async (name: string, opts: HomeOption & ContextOption & JsonOption & { app: string; databaseName?: string; user?: string; envFile?: string }) =>
        attachCommand.run(
          { home: resolveHome(opts.home), context: opts.context, name, app: opts.app, databaseName: opts.databaseName, user: opts.user, envFile: opts.envFile, json: opts.json === true },
          output,
        ),
      ),
    );

  program
    .command('detach')
    .description("remove an attached app's role and its access; its database is kept unless --drop-database --yes")
    .argument('<name>', 'cluster name')
    .requiredOption('--app <app>', 'the attached app')
    .option('--drop-database', "also drop the app's database and all its data (needs --yes)")
    .option('-y, --yes', 'confirm --drop-database')
    .option('--json', 'print what was removed as JSON')
    .addOption(homeOption())
    .addOption(contextOption())
    .addHelpText('after', examples('pgpilot detach demo --app shop', 'pgpilot detach demo --app shop --drop-database --yes'))
    .action(
      wrap(async (name: string, opts: HomeOption & ContextOption & JsonOption & { app: string; dropDatabase?: boolean; yes?: boolean }) =>
        detachCommand.run(
          { home: resolveHome(opts.home), context: opts.context, name, app: opts.app, dropDatabase: opts.dropDatabase === true, yes: opts.yes === true, json: opts.json === true },
          output,
        ),
      ),
    );

  const users = program
    .command('users')
    .description('list, create or delete database users (login roles) on the leader')
    .addHelpText('after', examples('pgpilot users list demo', 'pgpilot users create demo analyst', 'pgpilot users delete demo analyst --yes'));
  users
    .command('list')
    .description('list the users (pg_* roles excluded), with the app each belongs to')
    .argument('<name>', 'cluster name')
    .option('--json', 'print JSON')
    .addOption(homeOption())
    .addOption(contextOption())
    .addHelpText('after', examples('pgpilot users list demo', 'pgpilot users list demo --json'))
    .action(wrap(async (name: string, opts: HomeOption & ContextOption & JsonOption) => usersCommand.runList({ home: resolveHome(opts.home), context: opts.context, name, json: opts.json === true }, output)));
  users
    .command('create')
    .description('create a login role; its password is generated and printed once (or read from stdin)')
    .argument('<name>', 'cluster name')
    .argument('<user>', 'user name (lower-case letters, digits, _ and -)')
    .option('--superuser', 'make it a superuser')
    .option('--password-stdin', 'read the password from stdin (one line) instead of generating one')
    .option('--json', 'print user and password as JSON')
    .addOption(homeOption())
    .addOption(contextOption())
    .addHelpText(
      'after',
      examples('pgpilot users create demo analyst', 'pgpilot users create demo admin --superuser', "printf '%s' \"$PW\" | pgpilot users create demo reporter --password-stdin"),
    )
    .action(
      wrap(async (name: string, user: string, opts: HomeOption & ContextOption & JsonOption & { superuser?: boolean; passwordStdin?: boolean }) =>
        usersCommand.runCreate(
          { home: resolveHome(opts.home), context: opts.context, name, user, superuser: opts.superuser === true, passwordStdin: opts.passwordStdin === true, json: opts.json === true },
          output,
        ),
      ),
    );
  users
    .command('delete')
    .description('delete a user: end its sessions, give what it owns to the cluster superuser, drop it (needs --yes)')
    .argument('<name>', 'cluster name')
    .argument('<user>', 'user name')
    .option('-y, --yes', 'confirm')
    .option('--json', 'print JSON')
    .addOption(homeOption())
    .addOption(contextOption())
    .addHelpText('after', examples('pgpilot users delete demo analyst --yes'))
    .action(
      wrap(async (name: string, user: string, opts: HomeOption & ContextOption & JsonOption & { yes?: boolean }) =>
        usersCommand.runDelete({ home: resolveHome(opts.home), context: opts.context, name, user, yes: opts.yes === true, json: opts.json === true }, output),
      ),
    );

  const db = program
    .command('db')
    .description('list or create databases on the leader')
    .addHelpText('after', examples('pgpilot db list demo', 'pgpilot db create demo reports --owner analyst'));
  db.command('list')
    .description('list the databases (templates excluded): owner, size, access, app')
    .argument('<name>', 'cluster name')
    .option('--json', 'print JSON')
    .addOption(homeOption())
    .addOption(contextOption())
    .addHelpText('after', examples('pgpilot db list demo', 'pgpilot db list demo --json'))
    .action(wrap(async (name: string, opts: HomeOption & ContextOption & JsonOption) => dbCommand.runList({ home: resolveHome(opts.home), context: opts.context, name, json: opts.json === true }, output)));
  db.command('create')
    .description('create a private database (only its owner and superusers may connect)')
    .argument('<name>', 'cluster name')
    .argument('<database>', 'database name (lower-case letters, digits, _ and -)')
    .option('--owner <user>', 'the existing user that owns it and may connect (default: the cluster superuser)')
    .option('--json', 'print JSON')
    .addOption(homeOption())
    .addOption(contextOption())
    .addHelpText('after', examples('pgpilot db create demo reports', 'pgpilot db create demo reports --owner analyst'))
    .action(
      wrap(async (name: string, database: string, opts: HomeOption & ContextOption & JsonOption & { owner?: string }) =>
        dbCommand.runCreate({ home: resolveHome(opts.home), context: opts.context, name, database, owner: opts.owner, json: opts.json === true }, output),
      ),
    );

  program
    .command('import')
    .description('copy a whole database from another PostgreSQL (pg_dump/pg_restore in parallel) and check the row counts of every table')
    .argument('<name>', 'cluster name')
    .requiredOption('--source <url>', 'source database URL: postgresql://USER:PASSWORD@HOST:PORT/DB (the password never reaches an argv)')
    .option('--database <db>', "target database (default: the source's database name); created private if missing")
    .option('--owner <user>', "user that owns the imported objects (default: the attached app's user for that database, else the superuser)")
    .option('-j, --jobs <n>', 'parallel pg_dump / pg_restore jobs (1-16)', parseInteger('--jobs'), 2)
    .option('--force', 'import into a database that already has tables (objects in the dump are dropped and replaced)')
    .option('--timeout <seconds>', 'bound on the dump and on the restore', parseInteger('--timeout'), 3600)
    .option('--json', 'print the result (tables and row counts) as JSON')
    .addOption(homeOption())
    .addOption(contextOption())
    .addHelpText(
      'after',
      examples(
        'pgpilot import demo --source postgresql://app:secret@old-db.internal:5432/shop',
        'pgpilot import demo --source "$OLD_DATABASE_URL" --database shop --jobs 4',
        'pgpilot attach demo --app shop && pgpilot import demo --source "$OLD_DATABASE_URL" --database shop',
      ) + '\nProgress goes to stderr. The source must be PostgreSQL 15 or older (pg_dump 15). See docs/apps.md.\n',
    )
    .action(
      wrap(
        async (
          name: string,
          opts: HomeOption & ContextOption & JsonOption & { source: string; database?: string; owner?: string; jobs: number; force?: boolean; timeout: number },
        ) =>
          importCommand.run(
            {
              home: resolveHome(opts.home),
              context: opts.context,
              name,
              source: opts.source,
              database: opts.database,
              owner: opts.owner,
              jobs: opts.jobs,
              force: opts.force === true,
              timeoutSeconds: opts.timeout,
              json: opts.json === true,
            },
            output,
          ),
      ),
    );
}
