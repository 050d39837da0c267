/**
 * The pure parts of the HAProxy data plane (src/proxy/haproxy-data-plane.ts): the rendered
 * configuration (binds, N disabled slots and a backup `hold` server per section, the admin runtime
 * socket, pgsql-check) and that Debian's real `haproxy -c` accepts it (no network: -c binds
 * nothing); the stable member → slot map; the runtime commands planned from applied → desired
 * (first apply, idempotence, ready-before-maint on a leader change, a vanished member, an address
 * change, and the routes of an etcd view as src/proxy/routes.ts computes them); the filter of
 * runtime API answers; the `show stat` CSV parser on a header and rows as HAProxy 2.6 prints them.
 */
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import {
  DATA_PLANE_SLOTS,
  HEALTH_CHECK_USER,
  SlotMap,
  parseShowStat,
  planPortCommands,
  renderDataPlaneConfig,
  runtimeErrors,
  sectionName,
  type DataPlaneLayout,
  type ServerTarget,
} from '../../src/proxy/haproxy-data-plane.js';
import { bindPortsOf, checkHaproxyConfig } from '../../src/proxy/haproxy-process.js';
import { desiredRoutes, knownTargets } from '../../src/proxy/routes.js';
import { DEFAULT_NOW_MS, memberRecord, primaryRecord, reachable } from '../builders/observation-builder.js';
import { section, servers } from '../helpers/haproxy-sections.js';

type Applied = Parameters<typeof planPortCommands>[4];

const HAPROXY = '/usr/sbin/haproxy';

function layout(overrides: Partial<DataPlaneLayout> = {}): DataPlaneLayout {
  return {
    listenHost: '127.0.0.1',
    leaderPort: 26000,
    replicaPort: 26001,
    leaderHoldPort: 36000,
    replicaHoldPort: 36001,
    socketPath: '/tmp/pgpilot-test/haproxy.sock',
    slotCount: 3,
    ...overrides,
  };
}

const a: ServerTarget = { name: 'a', host: '127.0.0.1', port: 5001 };
const b: ServerTarget = { name: 'b', host: '127.0.0.1', port: 5002 };
const c: ServerTarget = { name: 'c', host: '127.0.0.1', port: 5003 };

const scratch = mkdtempSync(path.join(tmpdir(), 'pgpilot-data-plane-unit-'));
after(async () => {
  await rm(scratch, { recursive: true, force: true });
});

void describe('renderDataPlaneConfig', () => {
  void it('binds the leader and replica sections on the given host and ports', () => {
    const config = renderDataPlaneConfig(layout({ listenHost: '10.1.2.3' }));
    const leader = section(config, 'pgpilot_leader');
    const replica = section(config, 'pgpilot_replica');
    assert.ok(leader.includes('bind 10.1.2.3:26000'), leader.join('\n'));
    assert.ok(replica.includes('bind 10.1.2.3:26001'), replica.join('\n'));
    assert.equal(leader.filter((l) => l.startsWith('bind ')).length, 1);
    assert.equal(replica.filter((l) => l.startsWith('bind ')).length, 1);
    assert.ok(leader.includes('balance first'));
    assert.ok(replica.includes('balance roundrobin'));
    // Only the public ports are binds: the hold ports belong to the agent's own router.
    assert.deepEqual(bindPortsOf(config), [26000, 26001]);
    assert.equal(sectionName('leader'), 'pgpilot_leader');
    assert.equal(sectionName('replica'), 'pgpilot_replica');
  });

  void it('declares N disabled, checked slots at a placeholder address and a backup hold server per section', () => {
    const config = renderDataPlaneConfig(layout({ slotCount: 4 }));
    const slots = ['server s1 127.0.0.1:1 disabled check', 'server s2 127.0.0.1:1 disabled check', 'server s3 127.0.0.1:1 disabled check', 'server s4 127.0.0.1:1 disabled check'];
    assert.deepEqual(servers(section(config, 'pgpilot_leader')), [...slots, 'server hold 127.0.0.1:36000 backup']);
    assert.deepEqual(servers(section(config, 'pgpilot_replica')), [...slots, 'server hold 127.0.0.1:36001 backup']);
  });

  void it('health-checks with pgsql-check as the health check user, fast, without cutting sessions', () => {
    const config = renderDataPlaneConfig(layout());
    for (const name of ['pgpilot_leader', 'pgpilot_replica']) {
      const lines = section(config, name);
      assert.ok(lines.includes(`option pgsql-check user ${HEALTH_CHECK_USER}`), lines.join('\n'));
      assert.ok(lines.some((l) => l.startsWith('default-server ') && / inter 1s /.test(l) && / fall 1\b/.test(l)), lines.join('\n'));
    }
    assert.equal(HEALTH_CHECK_USER, 'pgpilot_healthcheck');
    assert.ok(!config.includes('on-marked-down'), 'a failed check must not cut established sessions');
    assert.match(config, /^\s+mode tcp$/m);
  });

  void it('opens the runtime API on the given unix socket with admin level', () => {
    const config = renderDataPlaneConfig(layout({ socketPath: '/run/pgpilot/node1/haproxy.sock' }));
    const statsLines = config.split('\n').filter((l) => l.trim().startsWith('stats socket '));
    assert.deepEqual(statsLines.map((l) => l.trim()), ['stats socket /run/pgpilot/node1/haproxy.sock mode 600 level admin']);
  });

  void it('is accepted by the real haproxy -c (default slot count and a single slot)', async () => {
    for (const slotCount of [DATA_PLANE_SLOTS, 1]) {
      const file = path.join(scratch, `data-plane-${slotCount}.cfg`);
      await writeFile(file, renderDataPlaneConfig(layout({ socketPath: path.join(scratch, 'haproxy.sock'), slotCount })));
      const result = await checkHaproxyConfig(file, { binary: HAPROXY });
      assert.equal(result.kind, 'ok', result.kind === 'error' ? result.errorText : '');
    }
  });
});

void describe('SlotMap', () => {
  void it('gives each member a stable slot, lowest free first', () => {
    const slots = new SlotMap(3);
    assert.equal(slots.slotOf('a'), 1);
    assert.equal(slots.slotOf('b'), 2);
    assert.equal(slots.slotOf('a'), 1);
    assert.equal(slots.slotOf('c'), 3);
    assert.equal(slots.slotOf('b'), 2);
    assert.deepEqual(slots.entries(), [
      ['a', 1],
      ['b', 2],
      ['c', 3],
    ]);
  });

  void it('keeps the slots of retained members and reuses freed ones', () => {
    const slots = new SlotMap(3);
    for (const name of ['a', 'b', 'c']) slots.slotOf(name);
    slots.retain(new Set(['a', 'c']));
    assert.equal(slots.slotOf('a'), 1);
    assert.equal(slots.slotOf('c'), 3);
    assert.equal(slots.slotOf('d'), 2, 'the slot b left is reused');
    slots.retain(new Set());
    assert.deepEqual(slots.entries(), []);
    assert.equal(slots.slotOf('c'), 1);
  });

  void it('returns null when every slot is taken, and a slot again once one is freed', () => {
    const slots = new SlotMap(2);
    assert.equal(slots.slotOf('a'), 1);
    assert.equal(slots.slotOf('b'), 2);
    assert.equal(slots.slotOf('c'), null);
    assert.equal(slots.slotOf('c'), null);
    slots.retain(new Set(['b', 'c']));
    assert.equal(slots.slotOf('c'), 1);
  });
});

void describe('planPortCommands', () => {
  void it('first apply: sets the address of every known member, ready for the desired ones, maint for the others', () => {
    const slots = new SlotMap(4);
    const applied: Applied = new Map();
    const commands = planPortCommands('replica', slots, [a, b, c], [b], applied);
    assert.deepEqual(commands, [
      'set server pgpilot_replica/s2 addr 127.0.0.1 port 5002',
      'set server pgpilot_replica/s2 state ready',
      'set server pgpilot_replica/s2 health up',
      'set server pgpilot_replica/s1 addr 127.0.0.1 port 5001',
      'set server pgpilot_replica/s1 state maint',
      'set server pgpilot_replica/s3 addr 127.0.0.1 port 5003',
      'set server pgpilot_replica/s3 state maint',
    ]);
    assert.deepEqual([...applied.keys()].sort(), [1, 2, 3]);
  });

  void it('a second identical apply sends nothing', () => {
    const slots = new SlotMap(4);
    const applied: Applied = new Map();
    assert.ok(planPortCommands('leader', slots, [a, b], [a], applied).length > 0);
    assert.deepEqual(planPortCommands('leader', slots, [a, b], [a], applied), []);
    assert.deepEqual(planPortCommands('leader', slots, [a, b], [a], applied), []);
  });

  void it('a leader change makes the new leader ready before the old one goes to maint', () => {
    const slots = new SlotMap(4);
    const applied: Applied = new Map();
    planPortCommands('leader', slots, [a, b], [a], applied);
    const commands = planPortCommands('leader', slots, [a, b], [b], applied);
    assert.deepEqual(commands, ['set server pgpilot_leader/s2 state ready', 'set server pgpilot_leader/s2 health up', 'set server pgpilot_leader/s1 state maint']);
    const readyAt = commands.indexOf('set server pgpilot_leader/s2 state ready');
    const maintAt = commands.indexOf('set server pgpilot_leader/s1 state maint');
    assert.ok(readyAt !== -1 && maintAt !== -1 && readyAt < maintAt);
    // Even when the new leader sorts after the old one in `known`.
    const again = planPortCommands('leader', slots, [b, a], [a], applied);
    assert.deepEqual(again, ['set server pgpilot_leader/s1 state ready', 'set server pgpilot_leader/s1 health up', 'set server pgpilot_leader/s2 state maint']);
  });

  void it('hold (empty desired set) puts every slot in maint', () => {
    const slots = new SlotMap(4);
    const applied: Applied = new Map();
    planPortCommands('leader', slots, [a, b], [a], applied);
    assert.deepEqual(planPortCommands('leader', slots, [a, b], [], applied), ['set server pgpilot_leader/s1 state maint']);
  });

  void it('a member that disappears goes to maint and its slot is freed for the next member', () => {
    const slots = new SlotMap(4);
    const applied: Applied = new Map();
    planPortCommands('replica', slots, [a, b], [a, b], applied);
    slots.retain(new Set(['a']));
    const commands = planPortCommands('replica', slots, [a], [a], applied);
    assert.deepEqual(commands, ['set server pgpilot_replica/s2 state maint']);
    assert.deepEqual([...applied.keys()], [1]);
    assert.deepEqual(slots.entries(), [['a', 1]]);
    // A new member takes the freed slot and gets its own address.
    const next = planPortCommands('replica', slots, [a, c], [a], applied);
    assert.deepEqual(next, ['set server pgpilot_replica/s2 addr 127.0.0.1 port 5003', 'set server pgpilot_replica/s2 state maint']);
  });

  void it('a vanished member that was in maint needs no command', () => {
    const slots = new SlotMap(4);
    const applied: Applied = new Map();
    planPortCommands('leader', slots, [a, b], [a], applied);
    slots.retain(new Set(['a']));
    assert.deepEqual(planPortCommands('leader', slots, [a], [a], applied), []);
    assert.deepEqual([...applied.keys()], [1]);
  });

  void it('an address change re-sends addr (and the state with it)', () => {
    const slots = new SlotMap(4);
    const applied: Applied = new Map();
    planPortCommands('leader', slots, [a, b], [a], applied);
    const moved = { ...a, host: '10.0.0.7', port: 6543 };
    assert.deepEqual(planPortCommands('leader', slots, [moved, b], [moved], applied), [
      'set server pgpilot_leader/s1 addr 10.0.0.7 port 6543',
      'set server pgpilot_leader/s1 state ready',
      'set server pgpilot_leader/s1 health up',
    ]);
    const bMoved = { ...b, port: 7000 };
    assert.deepEqual(planPortCommands('leader', slots, [moved, bMoved], [moved], applied), [
      'set server pgpilot_leader/s2 addr 127.0.0.1 port 7000',
      'set server pgpilot_leader/s2 state maint',
    ]);
    assert.deepEqual(planPortCommands('leader', slots, [moved, bMoved], [moved], applied), []);
  });

  void it('skips members beyond the slot count', () => {
    const slots = new SlotMap(1);
    const applied: Applied = new Map();
    assert.deepEqual(planPortCommands('leader', slots, [a, b], [b], applied), ['set server pgpilot_leader/s1 addr 127.0.0.1 port 5001', 'set server pgpilot_leader/s1 state maint']);
  });

  void it('plans the routes of an etcd view (knownTargets + desiredRoutes)', () => {
    const view = reachable({
      leader: 'node1',
      members: [
        primaryRecord({ name: 'node1', replication: [{ applicationName: 'node2', state: 'streaming', replayLsn: '0/3000000', lagBytes: 0, syncState: 'async' }] }),
        memberRecord({ name: 'node2', following: 'node1' }),
        memberRecord({ name: 'node3', role: 'stopped', state: 'stopped', streaming: false }),
      ],
    });
    const known = knownTargets(view);
    const desired = desiredRoutes(view, DEFAULT_NOW_MS, 1024 * 1024);
    assert.deepEqual(desired.leader.map((t) => t.name), ['node1']);
    assert.deepEqual(desired.replica.map((t) => t.name), ['node2']);
    const slots = new SlotMap(DATA_PLANE_SLOTS);
    const leaderApplied: Applied = new Map();
    const replicaApplied: Applied = new Map();
    const leader = planPortCommands('leader', slots, known, desired.leader, leaderApplied);
    const replica = planPortCommands('replica', slots, known, desired.replica, replicaApplied);
    assert.deepEqual(leader.filter((cmd) => cmd.endsWith('state ready')), ['set server pgpilot_leader/s1 state ready']);
    assert.deepEqual(replica.filter((cmd) => cmd.endsWith('state ready')), ['set server pgpilot_replica/s2 state ready']);
    assert.equal(leader.filter((cmd) => cmd.endsWith('state maint')).length, 2);
    assert.ok(leader.includes('set server pgpilot_leader/s3 addr 127.0.0.1 port 5433'), leader.join('\n'));
    // No view yet: nothing is known, every applied slot goes to maint (hold).
    slots.retain(new Set(knownTargets(null).map((t) => t.name)));
    const none = desiredRoutes(null, DEFAULT_NOW_MS, 0);
    assert.deepEqual(none, { leader: [], replica: [] });
    assert.deepEqual(planPortCommands('leader', slots, [], none.leader, leaderApplied), ['set server pgpilot_leader/s1 state maint']);
  });
});

void describe('runtimeErrors', () => {
  void it('finds nothing in the empty answers of successful commands', () => {
    assert.deepEqual(runtimeErrors(''), []);
    assert.deepEqual(runtimeErrors('\n\n\n\n'), []);
  });

  void it('reports refusals, one line each', () => {
    assert.deepEqual(runtimeErrors('\nNo such server.\n\n'), ['No such server.']);
    assert.deepEqual(runtimeErrors("No such backend.\n\n'set server <srv> state' expects 'ready', 'drain' and 'maint'.\n\n"), [
      'No such backend.',
      "'set server <srv> state' expects 'ready', 'drain' and 'maint'.",
    ]);
    assert.deepEqual(runtimeErrors('Unknown command. Please enter one of the following commands only :\n'), ['Unknown command. Please enter one of the following commands only :']);
  });

  // Captured from /usr/sbin/haproxy 2.6.12: every `set server ... addr ... port ...` answers what it
  // changed. Counted as a refusal, it would make the data plane resend its full state (with
  // `health up`) on every apply, forcing a slot the health check just marked down back up.
  void it('ignores the informational answer of `set server ... addr`', () => {
    const answer =
      "no need to change the addr, port changed from '1' to '5999' by 'stats socket command'\n\n\n\n" +
      "no need to change the addr, no need to change the port by 'stats socket command'\n\n\n" +
      "IP changed from '127.0.0.1' to '10.0.0.7', port changed from '1' to '5432' by 'stats socket command'\n\n" +
      "IP changed from '127.0.0.1' to '10.0.0.8', no need to change the port by 'stats socket command'\n";
    assert.deepEqual(runtimeErrors(answer), []);
    assert.deepEqual(runtimeErrors(`${answer}No such server.\n\n`), ['No such server.']);
  });
});

void describe('parseShowStat', () => {
  // The header exactly as HAProxy 2.6.12 prints it (`show stat` on the data plane's socket); rows
  // carry as many fields as the header, set by column name.
  const header =
    '# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight,act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,lbtot,tracked,type,rate,rate_lim,rate_max,check_status,check_code,check_duration,hrsp_1xx,hrsp_2xx,hrsp_3xx,hrsp_4xx,hrsp_5xx,hrsp_other,hanafail,req_rate,req_rate_max,req_tot,cli_abrt,srv_abrt,comp_in,comp_out,comp_byp,comp_rsp,lastsess,last_chk,last_agt,qtime,ctime,rtime,ttime,agent_status,agent_code,agent_duration,check_desc,agent_desc,check_rise,check_fall,check_health,agent_rise,agent_fall,agent_health,addr,cookie,mode,algo,conn_rate,conn_rate_max,conn_tot,intercepted,dcon,dses,wrew,connect,reuse,cache_lookups,cache_hits,srv_icur,src_ilim,qtime_max,ctime_max,rtime_max,ttime_max,eint,idle_conn_cur,safe_conn_cur,used_conn_cur,need_conn_est,uweight,agg_server_status,agg_server_check_status,agg_check_status,-,ssl_sess,ssl_reused_sess,ssl_failed_handshake,h2_headers_rcvd,h2_data_rcvd,h2_settings_rcvd,h2_rst_stream_rcvd,h2_goaway_rcvd,h2_detected_conn_protocol_errors,h2_detected_strm_protocol_errors,h2_rst_stream_resp,h2_goaway_resp,h2_open_connections,h2_backend_open_streams,h2_total_connections,h2_backend_total_streams,h1_open_connections,h1_open_streams,h1_total_connections,h1_total_streams,h1_bytes_in,h1_bytes_out,h1_spliced_bytes_in,h1_spliced_bytes_out,';
  const columns = header.slice(2).split(',');
  function row(values: Record<string, string>): string {
    assert.ok(Object.keys(values).every((k) => columns.includes(k)));
    return columns.map((name) => values[name] ?? '').join(',');
  }
  const frontend = (pxname: string, scur: number, stot: number): string =>
    row({ pxname, svname: 'FRONTEND', scur: String(scur), smax: String(scur), slim: '4096', stot: String(stot), status: 'OPEN', pid: '1', mode: 'tcp' });
  const server = (pxname: string, svname: string, scur: number, stot: number, status: string): string =>
    row({ pxname, svname, qcur: '0', qmax: '0', scur: String(scur), smax: String(scur), stot: String(stot), status, weight: '1', mode: 'tcp', addr: '127.0.0.1:5432' });
  const csv = [
    header,
    frontend('pgpilot_leader', 3, 120),
    server('pgpilot_leader', 's1', 2, 90, 'UP'),
    server('pgpilot_leader', 's2', 0, 0, 'MAINT'),
    server('pgpilot_leader', 'hold', 1, 30, 'no check'),
    server('pgpilot_leader', 'BACKEND', 3, 120, 'UP'),
    frontend('pgpilot_replica', 2, 7),
    server('pgpilot_replica', 's1', 2, 7, 'UP'),
    server('pgpilot_replica', 'BACKEND', 2, 7, 'UP'),
    frontend('stats', 9, 999),
    frontend('other_pgpilot_x', 8, 888),
    '',
    '',
  ].join('\n');

  void it('sums current and total sessions of the FRONTEND rows of the pgpilot_* sections only', () => {
    assert.deepEqual(parseShowStat(csv), { open: 5, total: 127 });
  });

  void it('finds columns by name, not position', () => {
    const reordered = ['# svname,stot,pxname,scur', 'FRONTEND,11,pgpilot_leader,1', 's1,11,pgpilot_leader,1', 'FRONTEND,4,pgpilot_replica,2', ''].join('\n');
    assert.deepEqual(parseShowStat(reordered), { open: 3, total: 15 });
  });

  void it('reads an empty or unexpected answer as zero', () => {
    assert.deepEqual(parseShowStat(''), { open: 0, total: 0 });
    assert.deepEqual(parseShowStat('Unknown command.\n'), { open: 0, total: 0 });
    assert.deepEqual(parseShowStat(`${header}\n`), { open: 0, total: 0 });
  });
});
