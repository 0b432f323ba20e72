/**
 * `-p`, `-P` and `--expose` as docker's CLI reads them: `[ip:][hostPort:]containerPort[/proto]`
 * with ranges, turned into the create body's ExposedPorts and PortBindings.
 */
import { CliError } from './command.ts';

export interface PortSpecs {
  exposed: Record<string, object>;
  bindings: Record<string, Array<{ HostIp: string; HostPort: string }>>;
}

function range(s: string, what: string, spec: string): [number, number] {
  const m = /^(\d+)(?:-(\d+))?$/.exec(s);
  const lo = m ? Number(m[1]) : NaN;
  const hi = m?.[2] ? Number(m[2]) : lo;
  if (!m || lo < (what === 'hostPort' ? 0 : 1) || hi > 65535 || hi < lo) throw new CliError(`invalid ${what}: ${s}${spec !== s ? ` (in "${spec}")` : ''}`, 125);
  return [lo, hi];
}

function splitProto(s: string): [string, string] {
  const i = s.lastIndexOf('/');
  if (i < 0) return [s, 'tcp'];
  const proto = s.slice(i + 1).toLowerCase();
  if (!['tcp', 'udp', 'sctp'].includes(proto)) throw new CliError(`invalid proto: ${proto}`, 125);
  return [s.slice(0, i), proto];
}

export function parsePortSpecs(publish: string[], expose: string[]): PortSpecs {
  const out: PortSpecs = { exposed: {}, bindings: {} };
  for (const e of expose) {
    const [ports, proto] = splitProto(e);
    const [lo, hi] = range(ports, 'containerPort', e);
    for (let p = lo; p <= hi; p++) out.exposed[`${p}/${proto}`] = {};
  }
  for (const spec of publish) {
    const [rest, proto] = splitProto(spec);
    let ip = '';
    let hostPart = '';
    let ctrPart = rest;
    const v6 = /^\[([^\]]+)\]:(.*)$/.exec(rest);
    const parts = v6 ? [v6[1]!, ...v6[2]!.split(':')] : rest.split(':');
    if (parts.length === 3) [ip, hostPart, ctrPart] = parts as [string, string, string];
    else if (parts.length === 2) [hostPart, ctrPart] = parts as [string, string];
    else if (parts.length !== 1) throw new CliError(`invalid port format: ${spec}`, 125);
    if (ip && !/^\d+\.\d+\.\d+\.\d+$/.test(ip) && !ip.includes(':')) throw new CliError(`invalid IP address: ${ip}`, 125);
    if (!ctrPart) throw new CliError(`no port specified: ${spec}<empty>`, 125);
    const [clo, chi] = range(ctrPart, 'containerPort', spec);
    const [hlo, hhi] = hostPart ? range(hostPart, 'hostPort', spec) : [0, 0];
    const n = chi - clo + 1;
    if (hostPart && hhi - hlo + 1 !== n && !(n === 1)) throw new CliError(`invalid ranges specified for container and host Ports: ${ctrPart} and ${hostPart}`, 125);
    for (let i = 0; i < n; i++) {
      const key = `${clo + i}/${proto}`;
      out.exposed[key] = {};
      // One container port with a host range: the daemon picks a free port from the range.
      const hostPort = !hostPart ? '' : n === 1 ? (hlo === hhi ? String(hlo) : `${hlo}-${hhi}`) : String(hlo + i);
      (out.bindings[key] ??= []).push({ HostIp: ip, HostPort: hostPort });
    }
  }
  return out;
}
