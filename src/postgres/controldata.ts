/**
 * Reading pg_control through pg_controldata: the one source that works while postgres is down,
 * which is when pgpilot needs it (is this data directory cleanly shut down? which timeline and
 * checkpoint did it reach? is it the same system as the leader's?). The parser is pure and tested
 * on recorded output; the program runs with LC_ALL=C because its labels are translated otherwise.
 * A missing or malformed field is an error, never a default: a wrong timeline or LSN would feed a
 * wrong failover or rewind decision.
 */
import { PgpilotError } from '../shared/errors.js';
import { formatLsn, parseLsn } from '../shared/lsn.js';
import { asPostgresUser, runCommand } from '../shared/process-runner.js';
import { pgBinary } from './bin-dir.js';
import { postgresEnv } from './initdb.js';

export interface ControlData {
  systemIdentifier: string;
  /** e.g. 'shut down', 'shut down in recovery', 'in production', 'in archive recovery'. */
  clusterState: string;
  latestCheckpointLsn: string;
  latestCheckpointRedoLsn: string;
  /** Latest checkpoint's TimeLineID. */
  timeline: number;
  minRecoveryEndLsn: string;
  minRecoveryEndTimeline: number;
  dataChecksumVersion: number;
  pgControlVersion: number;
  /** Every `label: value` line as printed, for the rarely needed rest (e.g. 'wal_log_hints setting'). */
  fields: Record<string, string>;
}

function malformed(what: string): PgpilotError {
  return new PgpilotError('POSTGRES_FAILED', `pg_controldata output ${what}`, {
    hint: 'check that the data directory is a PostgreSQL 15 data directory',
  });
}

/** Parses pg_controldata's output (LC_ALL=C). */
export function parseControldata(text: string): ControlData {
  const fields: Record<string, string> = {};
  for (const line of text.split('\n')) {
    // Labels never contain ':'; values may ("NextXID: 0:725"), and some have no space after it.
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    fields[line.slice(0, colon).trim()] = line.slice(colon + 1).trim();
  }
  const field = (label: string): string => {
    const value = fields[label];
    if (value === undefined || value.length === 0) throw malformed(`lacks "${label}"`);
    return value;
  };
  const lsn = (label: string): string => {
    const value = field(label);
    try {
      return formatLsn(parseLsn(value));
    } catch {
      throw malformed(`has an invalid LSN for "${label}": ${value}`);
    }
  };
  const integer = (label: string): number => {
    const value = field(label);
    if (!/^\d+$/.test(value)) throw malformed(`has a non-integer "${label}": ${value}`);
    return Number(value);
  };
  const systemIdentifier = field('Database system identifier');
  if (!/^\d+$/.test(systemIdentifier)) throw malformed(`has an invalid system identifier: ${systemIdentifier}`);
  return {
    systemIdentifier,
    clusterState: field('Database cluster state'),
    latestCheckpointLsn: lsn('Latest checkpoint location'),
    latestCheckpointRedoLsn: lsn("Latest checkpoint's REDO location"),
    timeline: integer("Latest checkpoint's TimeLineID"),
    minRecoveryEndLsn: lsn('Minimum recovery ending location'),
    minRecoveryEndTimeline: integer("Min recovery ending loc's timeline"),
    dataChecksumVersion: integer('Data page checksum version'),
    pgControlVersion: integer('pg_control version number'),
    fields,
  };
}

/** Runs pg_controldata on `dataDir` (as the postgres user) and parses it. */
export async function readControldata(binDir: string, dataDir: string): Promise<ControlData> {
  const wrapped = asPostgresUser(pgBinary(binDir, 'pg_controldata'), [dataDir]);
  let stdout: string;
  try {
    ({ stdout } = await runCommand(wrapped.command, wrapped.args, {
      env: postgresEnv({ LC_ALL: 'C', LANG: 'C' }),
      cwd: '/',
      timeoutMs: 30_000,
    }));
  } catch (error) {
    if (error instanceof PgpilotError && error.code === 'COMMAND_FAILED') {
      throw new PgpilotError('POSTGRES_FAILED', `pg_controldata ${dataDir} failed: ${error.message}`, {
        hint: 'check that the data directory exists and was initialised',
        cause: error,
      });
    }
    throw error;
  }
  return parseControldata(stdout);
}
