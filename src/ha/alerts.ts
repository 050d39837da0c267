/**
 * What an agent refused to trust, or could not read, in etcd, as standing alerts: published in its
 * member record (`alerts`), turned into a `warning` or `critical` health verdict by `pgpilot
 * status` (src/operations/cluster-status.ts), logged, and written to the event log once.
 * Invariant: an alert is reported (log + event) when it is raised or its message changes, never
 * on every tick that still sees the same problem, so a value left in etcd cannot flood the log or
 * the event list; it stays in the member record until the problem is gone.
 */
import type { AlertKind, MemberAlert, RaisedAlert } from '../state/member-alert.js';

/** The alerts of one agent, by kind (one standing alert per kind; the latest message wins). */
export class AlertBoard {
  private readonly alerts = new Map<AlertKind, RaisedAlert>();
  private readonly listeners: Array<(alert: RaisedAlert) => void> = [];

  /** Called when an alert is raised or its message changes (not when it is raised again unchanged). */
  onRaise(listener: (alert: RaisedAlert) => void): void {
    this.listeners.push(listener);
  }

  /** True when this is new (or a changed message): the listeners were told. */
  raise(kind: AlertKind, severity: MemberAlert['severity'], message: string): boolean {
    const current = this.alerts.get(kind);
    if (current !== undefined && current.severity === severity && current.message === message) return false;
    const alert: RaisedAlert = { kind, severity, message };
    this.alerts.set(kind, alert);
    for (const listener of this.listeners) listener(alert);
    return true;
  }

  /** True when an alert of that kind was standing. */
  clear(kind: AlertKind): boolean {
    return this.alerts.delete(kind);
  }

  has(kind: AlertKind): boolean {
    return this.alerts.has(kind);
  }

  list(): RaisedAlert[] {
    return [...this.alerts.values()];
  }
}
