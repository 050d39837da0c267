/**
 * Process warnings: printed as Node prints them, except DEP0123 ("Setting the TLS ServerName to an
 * IP address"). The gRPC client of etcd always sets the TLS server name to the host it dials, and
 * pgpilot dials IP addresses; the certificate is still checked against that IP (its SANs carry
 * every address), so the warning says nothing the user can act on. Everything else is kept.
 */
export function quietIpServernameWarning(): void {
  const defaultListeners = process.listeners('warning');
  process.removeAllListeners('warning');
  process.on('warning', (warning: Error & { code?: string }) => {
    if (warning.code === 'DEP0123') return;
    for (const listener of defaultListeners) listener(warning);
  });
}
