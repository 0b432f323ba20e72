/**
 * Address allocation inside one network's subnet: the gateway, the network
 * and broadcast addresses are never handed out; a dynamic address comes
 * from the ip-range when one is set, the lowest free one first.
 */
import { contains, formatIp, parseIp, parseSubnet, size } from './ipv4.ts';
import type { Subnet } from './ipv4.ts';
import type { IpamConfig } from './types.ts';
import { BerthError, invalid } from '../util/errors.ts';

export class AddressPool {
  readonly subnet: Subnet;
  readonly gateway: number;
  private readonly range: Subnet;
  private readonly used = new Set<number>();

  constructor(cfg: IpamConfig) {
    this.subnet = parseSubnet(cfg.Subnet);
    this.range = cfg.IPRange ? parseSubnet(cfg.IPRange) : this.subnet;
    this.gateway = cfg.Gateway ? parseIp(cfg.Gateway)! : this.subnet.base + 1;
    for (const aux of Object.values(cfg.AuxiliaryAddresses ?? {})) {
      const a = parseIp(aux);
      if (a !== undefined) this.used.add(a);
    }
  }

  private reserved(ip: number): boolean {
    const last = this.subnet.base + size(this.subnet) - 1;
    return ip === this.gateway || (this.subnet.prefix < 31 && (ip === this.subnet.base || ip === last));
  }

  /** Take a specific address (`--ip`), or the lowest free one. */
  allocate(want?: string): string {
    if (want) {
      const ip = parseIp(want);
      if (ip === undefined) throw invalid(`invalid IPv4 address: ${want}`);
      if (!contains(this.subnet, ip)) throw invalid(`invalid endpoint settings:\nno configured subnet or ip-range contain the IP address ${want}`);
      if (this.reserved(ip) || this.used.has(ip)) throw new BerthError('Conflict', `Address already in use: ${want}`);
      this.used.add(ip);
      return want;
    }
    const end = this.range.base + size(this.range);
    for (let ip = this.range.base; ip < end; ip++) {
      if (this.reserved(ip) || this.used.has(ip)) continue;
      this.used.add(ip);
      return formatIp(ip);
    }
    throw new BerthError('Unavailable', `no available IPv4 addresses on this network's address pools: ${formatIp(this.subnet.base)}/${this.subnet.prefix}`);
  }

  /** Mark an address taken (re-adopting a running container after a restart). */
  claim(ip: string): void {
    const n = parseIp(ip);
    if (n !== undefined) this.used.add(n);
  }

  release(ip: string): void {
    const n = parseIp(ip);
    if (n !== undefined) this.used.delete(n);
  }
}
