/**
 * docker's signal proxy for attached containers without a TTY (`run`,
 * `start -a`, `attach`; --sig-proxy, on by default): signals the CLI gets
 * are sent to the container instead of ending the CLI. With a TTY the
 * terminal itself delivers ^C as input, so nothing is proxied.
 */
import type { ApiClient } from './client.ts';

const PROXIED: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2'];

/** Start forwarding; the returned function stops it. */
export function proxySignals(client: ApiClient, id: string): () => void {
  const handlers = PROXIED.map((sig) => {
    const h = () => {
      client.post(`/containers/${id}/kill`, undefined, { signal: sig }).catch(() => undefined);
    };
    process.on(sig, h);
    return [sig, h] as const;
  });
  return () => {
    for (const [sig, h] of handlers) process.off(sig, h);
  };
}
