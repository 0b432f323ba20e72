/**
 * The network service: networks (create, list, inspect, remove, prune,
 * connect, disconnect) and what a container's network mode means at start
 * and exit (namespace, addresses, published ports, DNS names, /etc/hosts and
 * resolv.conf). It owns every change berthd makes to the host's network and
 * puts it back after a restart: running containers keep theirs, everything
 * else is removed.
 */
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { hostname as osHostname } from 'node:os';
import type { DaemonConfig } from '../daemon/config.ts';
import type { ContainerRecord, EndpointSettings } from '../engine/container-types.ts';
import type { EventBus } from '../engine/events.ts';
import { hostsFile, resolvConf } from '../engine/rootfs.ts';
import { AddressPool } from './ipam.ts';
import { DEFAULT_POOLS, carve, contains, formatIp, overlaps, parseIp, parseSubnet, subnetString } from './ipv4.ts';
import type { Subnet } from './ipv4.ts';
import { ensureBridge, hostSubnets, linkExists, linksWithAlias, removeLink, setSysctl, withHostLock } from './host-links.ts';
import { Firewall } from './firewall.ts';
import type { FirewallState } from './firewall.ts';
import { Sandboxes } from './sandbox.ts';
import type { Plumbing } from './sandbox.ts';
import { DnsServer } from './dns.ts';
import type { Upstream } from './dns.ts';
import { PortReservations, portRequests } from './ports.ts';
import { NetworkStore } from './network-store.ts';
import type { Endpoint, IpamConfig, NetworkRecord, PortMapping, SandboxState } from './types.ts';
import { BerthError, conflict, errorMessage, forbidden, invalid, notFound } from '../util/errors.ts';
import { newId, shortId } from '../util/ids.ts';
import { log } from '../util/log.ts';

/** What the container service needs to know to start a container's process. */
export interface NetworkSetup {
  ns: 'private' | 'host' | { path: string };
  hostname: string;
  hosts: string;
  resolv: string;
}

/** How the network service reaches containers (set by the engine). */
export interface ContainerAccess {
  find(ref: string): ContainerRecord | undefined;
  list(): ContainerRecord[];
  save(rec: ContainerRecord): Promise<void>;
}

export interface CreateNetworkRequest {
  Name?: string;
  Driver?: string;
  Internal?: boolean;
  Attachable?: boolean;
  EnableIPv6?: boolean;
  IPAM?: { Driver?: string; Config?: IpamConfig[] | null; Options?: Record<string, string> | null };
  Options?: Record<string, string> | null;
  Labels?: Record<string, string> | null;
}

export interface EndpointRequest {
  Aliases?: string[] | null;
  IPAMConfig?: { IPv4Address?: string; IPv6Address?: string } | null;
  MacAddress?: string;
  Links?: string[] | null;
  DriverOpts?: Record<string, string> | null;
}

const BRIDGE_NAME_OPT = 'com.docker.network.bridge.name';
const MTU_OPT = 'com.docker.network.driver.mtu';

/** A per-daemon tag: names of bridges and chains and the alias marking our links. */
function daemonTag(cfg: DaemonConfig): string {
  return cfg.bridge && cfg.bridge !== 'none' ? cfg.bridge : 'berth0';
}

function randomMac(): string {
  const b = randomBytes(6);
  b[0] = (b[0]! & 0xfe) | 0x02; // unicast, locally administered
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join(':');
}

/** docker derives a bridge endpoint's MAC from its IPv4 address. */
function macForIp(ip: string): string {
  return ['02', '42', ...ip.split('.').map((n) => Number(n).toString(16).padStart(2, '0'))].join(':');
}

function parseUpstream(s: string): Upstream | undefined {
  const m = /^(\d+\.\d+\.\d+\.\d+)(?::(\d+))?$/.exec(s.trim());
  if (m) return { host: m[1]!, port: m[2] ? Number(m[2]) : 53 };
  if (/^[0-9a-f:]+$/i.test(s) && s.includes(':')) return { host: s, port: 53 };
  return undefined;
}

export class NetworkService {
  readonly store: NetworkStore;
  private readonly cfg: DaemonConfig;
  private readonly events: EventBus;
  private readonly tag: string;
  private readonly sandboxes: Sandboxes;
  private readonly firewall: Firewall;
  private readonly reservations = new PortReservations();
  private readonly pools = new Map<string, AddressPool>();
  private readonly dns = new Map<string, DnsServer>();
  /** Running containers' network state, by container ID. */
  private readonly active = new Map<string, SandboxState>();
  private hostResolv = '';
  containers?: ContainerAccess;
  /** Serialises changes to networks and firewall syncs. */
  private chain: Promise<unknown> = Promise.resolve();

  constructor(cfg: DaemonConfig, events: EventBus) {
    this.cfg = cfg;
    this.events = events;
    this.tag = daemonTag(cfg);
    this.store = new NetworkStore(cfg.dataRoot);
    this.sandboxes = new Sandboxes(cfg.execRoot, cfg.nativeDir);
    this.firewall = new Firewall(this.tag);
  }

  private get alias(): string {
    return `berth:${this.tag}`;
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.chain.then(fn, fn);
    this.chain = p.catch(() => undefined);
    return p;
  }

  private access(): ContainerAccess {
    if (!this.containers) throw new Error('network service used before the container service was wired');
    return this.containers;
  }

  // ------------------------------------------------------------ startup

  async init(): Promise<void> {
    this.hostResolv = await readFile('/etc/resolv.conf', 'utf8').catch(() => '');
    await this.sandboxes.init();
    await this.store.init();
    await this.ensurePredefined();
    await setSysctl('net/ipv4/ip_forward', '1');
    for (const n of this.store.all()) {
      if (n.Driver !== 'bridge' && n.Driver !== 'macvlan') continue;
      const ipam = n.IPAM.Config[0];
      if (!ipam) continue;
      this.pools.set(n.Id, new AddressPool(ipam));
      if (n.Driver === 'bridge') {
        await ensureBridge(n.berth.device, `${ipam.Gateway}/${parseSubnet(ipam.Subnet).prefix}`, this.alias, mtuOf(n));
        if (!n.berth.predefined) await this.startDns(n);
      }
    }
    // Bridges this daemon made for networks that no longer exist.
    const wanted = new Set(this.store.all().filter((n) => n.Driver === 'bridge').map((n) => n.berth.device));
    for (const l of await linksWithAlias(this.alias)) if (!wanted.has(l)) await removeLink(l);
    await this.firewall.init(this.firewallState());
  }

  /** The default bridge, host and none, as docker always has them. */
  private async ensurePredefined(): Promise<void> {
    const base = (name: string, driver: NetworkRecord['Driver']): NetworkRecord => ({
      Name: name, Id: newId(), Created: new Date().toISOString(), Scope: 'local', Driver: driver, EnableIPv4: true, EnableIPv6: false,
      IPAM: { Driver: 'default', Options: null, Config: [] }, Internal: false, Attachable: false, Ingress: false,
      ConfigFrom: { Network: '' }, ConfigOnly: false, Options: {}, Labels: {}, berth: { device: '', predefined: true },
    });
    for (const [name, driver] of [['host', 'host'], ['none', 'null']] as const) {
      if (!this.store.find(name)) await this.store.add(base(name, driver));
    }
    let bridge = this.store.all().find((n) => n.Name === 'bridge');
    const device = this.tag;
    const old = bridge?.IPAM.Config[0];
    let ipam: IpamConfig | undefined;
    if (this.cfg.bip) {
      const m = /^(\d+\.\d+\.\d+\.\d+)\/(\d+)$/.exec(this.cfg.bip);
      if (!m || parseIp(m[1]!) === undefined) throw invalid(`invalid --bip: ${this.cfg.bip}`);
      const sub = parseSubnet(this.cfg.bip);
      ipam = { Subnet: subnetString(sub), Gateway: m[1]! };
    }
    await withHostLock(async () => {
      if (!ipam && old && bridge?.berth.device === device) {
        // Keep the subnet from the last run unless someone else took it meanwhile.
        const sub = parseSubnet(old.Subnet);
        const taken = (await this.hostSubnetsExcept(device)).some((s) => overlaps(s, sub));
        if (!taken) ipam = old;
      }
      if (!ipam) {
        const sub = await this.pickSubnet(device);
        ipam = { Subnet: subnetString(sub), Gateway: formatIp(sub.base + 1) };
      }
      await ensureBridge(device, `${ipam.Gateway}/${parseSubnet(ipam.Subnet).prefix}`, this.alias);
    });
    if (!bridge) bridge = base('bridge', 'bridge');
    bridge.berth = { device, predefined: true };
    bridge.IPAM = { Driver: 'default', Options: null, Config: [ipam!] };
    bridge.Options = {
      'com.docker.network.bridge.default_bridge': 'true',
      'com.docker.network.bridge.enable_icc': 'true',
      'com.docker.network.bridge.enable_ip_masquerade': 'true',
      'com.docker.network.bridge.host_binding_ipv4': '0.0.0.0',
      [BRIDGE_NAME_OPT]: device,
      [MTU_OPT]: '1500',
    };
    if (this.store.find('bridge')) await this.store.save(bridge);
    else await this.store.add(bridge);
  }

  private async hostSubnetsExcept(device: string): Promise<Subnet[]> {
    const mine = this.store.all().filter((n) => n.berth.device === device).flatMap((n) => n.IPAM.Config.map((c) => parseSubnet(c.Subnet)));
    return (await hostSubnets()).filter((s) => !mine.some((m) => m.base === s.base && m.prefix === s.prefix));
  }

  /** The first pool subnet not used by the host or by another network (hold the host lock). */
  private async pickSubnet(exceptDevice = ''): Promise<Subnet> {
    const used = [...(await this.hostSubnetsExcept(exceptDevice)), ...this.store.all().filter((n) => n.berth.device !== exceptDevice).flatMap((n) => n.IPAM.Config.map((c) => parseSubnet(c.Subnet)))];
    const pools = this.cfg.addressPools?.length ? this.cfg.addressPools : DEFAULT_POOLS;
    for (const p of pools) {
      for (const s of carve(parseSubnet(p.base), p.size)) {
        if (!used.some((u) => overlaps(u, s))) return s;
      }
    }
    throw new BerthError('Unavailable', 'could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network');
  }

  /**
   * After a restart: running containers keep their namespace, addresses,
   * ports and names; namespaces of anything else are removed. Then the
   * firewall is rewritten to match.
   */
  async reconcile(): Promise<void> {
    const access = this.access();
    for (const id of await this.sandboxes.known()) {
      const rec = access.find(id);
      const state = await this.sandboxes.loadState(id);
      if (rec && rec.State.Running && state && this.sandboxes.exists(id)) {
        try {
          for (const ep of state.endpoints) this.pools.get(ep.networkId)?.claim(ep.ip);
          await this.reserveAgain(state);
          this.active.set(id, state);
          continue;
        } catch (err) {
          log.warn('could not restore the network of a running container', { id, error: errorMessage(err) });
        }
      }
      if (rec) {
        await this.teardown(rec);
        await access.save(rec).catch(() => undefined);
      } else {
        await this.sandboxes.destroy(id);
      }
    }
    await this.syncFirewall();
  }

  private async reserveAgain(state: SandboxState): Promise<void> {
    if (!state.ports.length) return;
    await this.reservations.reserve(state.containerId, state.ports.map((p) => ({ proto: p.proto, containerPort: p.containerPort, hostIp: p.hostIp, hostPorts: [p.hostPort, p.hostPort] })), (r, port) => `failed to bind host port ${r.hostIp}:${port}/${r.proto}`);
  }

  /** berthd stopping: free sockets; with nothing running, remove every rule and bridge too. */
  async shutdown(): Promise<void> {
    for (const d of this.dns.values()) d.stop();
    this.dns.clear();
    this.reservations.releaseAll();
    await this.sandboxes.settle().catch((err) => log.warn('removing a network namespace failed', { error: errorMessage(err) }));
    const running = this.access().list().some((c) => c.State.Running);
    if (running) return;
    await this.firewall.remove().catch((err) => log.warn('removing firewall rules failed', { error: errorMessage(err) }));
    for (const l of await linksWithAlias(this.alias).catch(() => [] as string[])) await removeLink(l);
  }

  private firewallState(): FirewallState {
    const bridges = this.store.all().filter((n) => n.Driver === 'bridge' && n.IPAM.Config[0]).map((n) => ({ device: n.berth.device, subnet: n.IPAM.Config[0]!.Subnet, internal: n.Internal }));
    const ports = [...this.active.values()].flatMap((s) => s.ports);
    return { bridges, ports };
  }

  private syncFirewall(): Promise<void> {
    return this.serial(() => this.firewall.sync(this.firewallState()));
  }

  // ------------------------------------------------------------ DNS

  private async startDns(n: NetworkRecord): Promise<void> {
    const gw = n.IPAM.Config[0]?.Gateway;
    if (!gw || this.dns.has(n.Id)) return;
    const server = new DnsServer(gw, {
      lookup: (name, from) => this.lookup(n.Id, name, from),
      reverse: (ip) => this.reverse(n.Id, ip),
      upstreams: (from) => this.upstreams(n.Id, from),
    });
    try {
      await server.start();
      this.dns.set(n.Id, server);
    } catch (err) {
      log.warn('embedded DNS could not listen; names will not resolve on this network', { network: n.Name, address: gw, error: errorMessage(err) });
    }
  }

  private endpointsOn(netId: string): Array<{ rec: ContainerRecord; ep: Endpoint }> {
    const out: Array<{ rec: ContainerRecord; ep: Endpoint }> = [];
    for (const st of this.active.values()) {
      const rec = this.containers?.find(st.containerId);
      if (!rec) continue;
      for (const ep of st.endpoints) if (ep.networkId === netId) out.push({ rec, ep });
    }
    return out;
  }

  /** The names a container answers to on a network. */
  private namesOf(rec: ContainerRecord, ep: Endpoint): string[] {
    const names = [rec.Name.slice(1), ...ep.aliases, shortId(rec.Id)];
    if (rec.Config.Hostname) names.push(rec.Config.Hostname);
    return names.map((x) => x.toLowerCase());
  }

  private lookup(netId: string, name: string, from: string): string[] | undefined {
    const ips: string[] = [];
    const net = this.store.find(netId);
    const candidates = [name];
    // `web.mynet` names a container on the network `mynet`.
    if (net && name.endsWith(`.${net.Name.toLowerCase()}`)) candidates.push(name.slice(0, -net.Name.length - 1));
    for (const { rec, ep } of this.endpointsOn(netId)) {
      const names = this.namesOf(rec, ep);
      if (candidates.some((c) => names.includes(c))) ips.push(ep.ip);
    }
    // Links of the asking container (its own aliases for other containers).
    if (!ips.length) {
      const asker = this.endpointsOn(netId).find((e) => e.ep.ip === from)?.rec;
      for (const l of asker?.HostConfig.Links ?? []) {
        const [target, alias] = splitLink(l);
        if (alias.toLowerCase() !== name) continue;
        const t = this.containers?.find(target);
        const tep = t ? this.endpointsOn(netId).find((e) => e.rec.Id === t.Id) : undefined;
        if (tep) ips.push(tep.ep.ip);
      }
    }
    return ips.length ? ips : undefined;
  }

  private reverse(netId: string, ip: string): string | undefined {
    const hit = this.endpointsOn(netId).find((e) => e.ep.ip === ip);
    const net = this.store.find(netId);
    return hit && net ? `${hit.rec.Name.slice(1)}.${net.Name}` : undefined;
  }

  private upstreams(netId: string, from: string): Upstream[] {
    const asker = this.endpointsOn(netId).find((e) => e.ep.ip === from)?.rec;
    const own = (asker?.HostConfig.Dns ?? []).map(parseUpstream).filter((u): u is Upstream => !!u);
    if (own.length) return own;
    const daemon = (this.cfg.dns ?? []).map(parseUpstream).filter((u): u is Upstream => !!u);
    if (daemon.length) return daemon;
    return this.hostResolv.split('\n').map((l) => /^\s*nameserver\s+(\S+)/.exec(l)?.[1]).filter((x): x is string => !!x).map(parseUpstream).filter((u): u is Upstream => !!u);
  }

  // ------------------------------------------------------------ networks

  list(): NetworkRecord[] {
    return this.store.all();
  }

  find(ref: string): NetworkRecord {
    return this.store.mustFind(ref);
  }

  /** `network inspect`: the record with its running endpoints. */
  inspect(n: NetworkRecord): Record<string, unknown> {
    const { berth: _own, ...rest } = n;
    const containers: Record<string, unknown> = {};
    for (const { rec, ep } of this.endpointsOn(n.Id)) {
      containers[rec.Id] = { Name: rec.Name.slice(1), EndpointID: ep.endpointId, MacAddress: ep.mac, IPv4Address: `${ep.ip}/${ep.prefix}`, IPv6Address: '' };
    }
    if (n.Driver === 'host' || n.Driver === 'null') {
      for (const rec of this.containers?.list() ?? []) {
        if (rec.State.Running && rec.HostConfig.NetworkMode === (n.Driver === 'host' ? 'host' : 'none')) {
          containers[rec.Id] = { Name: rec.Name.slice(1), EndpointID: '', MacAddress: '', IPv4Address: '', IPv6Address: '' };
        }
      }
    }
    return { ...rest, Containers: containers };
  }

  async create(req: CreateNetworkRequest): Promise<{ Id: string; Warning: string }> {
    return this.serial(() => this.doCreate(req));
  }

  private async doCreate(req: CreateNetworkRequest): Promise<{ Id: string; Warning: string }> {
    const name = req.Name ?? '';
    if (!name) throw invalid('network name is required');
    if (!/^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/.test(name)) throw invalid(`invalid network name "${name}": must match [a-zA-Z0-9][a-zA-Z0-9_.-]*`);
    if (this.store.all().some((n) => n.Name === name)) throw conflict(`network with name ${name} already exists`);
    const driver = req.Driver || 'bridge';
    if (driver === 'host' || driver === 'null') throw forbidden(`only one instance of "${driver}" network is allowed`);
    if (driver !== 'bridge' && driver !== 'macvlan') throw notFound(`could not find plugin ${driver} in v1 plugin registry: plugin not found`);
    if (req.EnableIPv6) throw invalid('IPv6 networks are not supported by berth');
    if (req.IPAM?.Driver && req.IPAM.Driver !== 'default') throw notFound(`could not find plugin ${req.IPAM.Driver} in v1 plugin registry: plugin not found`);
    const options = { ...(req.Options ?? {}) };
    const id = newId();
    let device: string;
    if (driver === 'bridge') {
      device = options[BRIDGE_NAME_OPT] || `br-${id.slice(0, 12)}`;
      if (device.length > 15 || !/^[a-zA-Z0-9_.-]+$/.test(device)) throw invalid(`invalid bridge name: ${device}`);
      if (linkExists(device) || this.store.all().some((n) => n.berth.device === device)) throw conflict(`bridge name ${device} is already in use`);
    } else {
      device = options.parent ?? '';
      if (!device) throw invalid('macvlan networks need a parent interface: -o parent=<interface>');
      if (!linkExists(device)) throw invalid(`-o parent interface was not found on the host: ${device}`);
      const mode = options.macvlan_mode ?? 'bridge';
      if (mode !== 'bridge') throw invalid(`macvlan mode ${mode} is not supported (bridge only)`);
    }
    const mtu = options[MTU_OPT];
    if (mtu !== undefined && !/^\d+$/.test(mtu)) throw invalid(`invalid MTU: ${mtu}`);
    const configs = (req.IPAM?.Config ?? []).filter((c) => !c.Subnet?.includes(':'));
    if (configs.length > 1) throw invalid('berth supports one IPv4 subnet per network');
    const rec: NetworkRecord = {
      Name: name, Id: id, Created: new Date().toISOString(), Scope: 'local', Driver: driver, EnableIPv4: true, EnableIPv6: false,
      IPAM: { Driver: 'default', Options: req.IPAM?.Options ?? {}, Config: [] }, Internal: !!req.Internal, Attachable: !!req.Attachable,
      Ingress: false, ConfigFrom: { Network: '' }, ConfigOnly: false, Options: options, Labels: req.Labels ?? {}, berth: { device },
    };
    const asked = configs[0];
    let ipam: IpamConfig | undefined;
    if (asked) {
      if (!asked.Subnet) throw invalid('IPAM configuration needs a subnet');
      const sub = parseSubnet(asked.Subnet);
      if (sub.prefix > 30) throw invalid(`invalid subnet ${asked.Subnet}: too small for a network`);
      if (asked.Gateway !== undefined && asked.Gateway !== '') {
        const gw = parseIp(asked.Gateway);
        if (gw === undefined) throw invalid(`invalid gateway address: ${asked.Gateway}`);
        if (!contains(sub, gw)) throw invalid(`no matching subnet for gateway ${asked.Gateway}`);
      }
      if (asked.IPRange) {
        const range = parseSubnet(asked.IPRange);
        if (!contains(sub, range.base) || range.prefix < sub.prefix) throw invalid(`no matching subnet for range ${asked.IPRange}`);
      }
      for (const [k, v] of Object.entries(asked.AuxiliaryAddresses ?? {})) {
        const a = parseIp(v);
        if (a === undefined || !contains(sub, a)) throw invalid(`no matching subnet for aux-address ${k}=${v}`);
      }
      for (const other of this.store.all()) {
        for (const c of other.IPAM.Config) {
          if (overlaps(parseSubnet(c.Subnet), sub)) throw forbidden(`invalid pool request: Pool overlaps with other one on this address space`);
        }
      }
      ipam = { Subnet: subnetString(sub), Gateway: asked.Gateway || formatIp(sub.base + 1), ...(asked.IPRange ? { IPRange: subnetString(parseSubnet(asked.IPRange)) } : {}), ...(asked.AuxiliaryAddresses ? { AuxiliaryAddresses: asked.AuxiliaryAddresses } : {}) };
    }
    const bring = async () => {
      if (!ipam) {
        const sub = await this.pickSubnet();
        ipam = { Subnet: subnetString(sub), Gateway: formatIp(sub.base + 1) };
      }
      rec.IPAM.Config = [ipam];
      if (driver === 'bridge') await ensureBridge(device, `${ipam.Gateway}/${parseSubnet(ipam.Subnet).prefix}`, this.alias, mtu ? Number(mtu) : undefined);
    };
    try {
      if (driver === 'bridge' || !ipam) await withHostLock(bring);
      else await bring();
      this.pools.set(id, new AddressPool(rec.IPAM.Config[0]!));
      await this.store.add(rec);
      if (driver === 'bridge') {
        await this.firewall.sync(this.firewallState());
        await this.startDns(rec);
      }
    } catch (err) {
      this.pools.delete(id);
      this.dns.get(id)?.stop();
      this.dns.delete(id);
      await this.store.remove(rec).catch(() => undefined);
      if (driver === 'bridge') await removeLink(device);
      await this.firewall.sync(this.firewallState()).catch(() => undefined);
      if (err instanceof BerthError) throw err;
      throw new BerthError('System', `failed to create network ${name}: ${errorMessage(err)}`);
    }
    this.events.emit('network', 'create', id, { name, type: driver });
    return { Id: id, Warning: '' };
  }

  private activeOn(netId: string): ContainerRecord[] {
    return this.endpointsOn(netId).map((e) => e.rec);
  }

  async remove(ref: string): Promise<void> {
    return this.serial(async () => {
      const n = this.store.mustFind(ref);
      if (n.berth.predefined) throw forbidden(`${n.Name} is a pre-defined network and cannot be removed`);
      if (this.activeOn(n.Id).length) throw forbidden(`error while removing network: network ${n.Name} id ${n.Id} has active endpoints`);
      this.dns.get(n.Id)?.stop();
      this.dns.delete(n.Id);
      this.pools.delete(n.Id);
      await this.store.remove(n);
      if (n.Driver === 'bridge') {
        await removeLink(n.berth.device);
        await this.firewall.sync(this.firewallState());
      }
      this.events.emit('network', 'destroy', n.Id, { name: n.Name, type: n.Driver });
    });
  }

  async prune(match: (n: NetworkRecord) => boolean): Promise<string[]> {
    const gone: string[] = [];
    for (const n of this.store.all()) {
      if (n.berth.predefined || !match(n) || this.activeOn(n.Id).length) continue;
      try {
        await this.remove(n.Id);
        gone.push(n.Name);
      } catch {
        // in use meanwhile
      }
    }
    return gone;
  }

  // ------------------------------------------------------------ containers: create

  /**
   * At container create: check the network mode, the endpoints asked for,
   * ports, links and extra hosts, and record the endpoint settings.
   */
  prepareCreate(rec: ContainerRecord, endpoints: Record<string, unknown> | undefined): void {
    const hc = rec.HostConfig;
    const mode = hc.NetworkMode;
    const asked = (endpoints ?? {}) as Record<string, EndpointRequest | null>;
    const nets: Record<string, EndpointSettings> = {};
    const requests: Array<[string, EndpointRequest]> = [];
    if (mode.startsWith('container:')) {
      if (hc.PortBindings && Object.keys(hc.PortBindings).length) throw invalid('conflicting options: port publishing and the container type network mode');
      if (hc.PublishAllPorts) throw invalid('conflicting options: port publishing and the container type network mode');
      if (hc.Dns?.length || hc.ExtraHosts?.length) throw invalid('conflicting options: dns and the network mode');
      rec.NetworkSettings.Networks = {};
      return;
    }
    if (mode === 'host' || mode === 'none') {
      if (mode === 'host' && (hc.Links ?? []).length) throw invalid('conflicting options: host type networking can\'t be used with links. This would result in undefined behavior');
      requests.push([mode, asked[mode] ?? {}]);
    } else {
      requests.push([mode, asked[mode] ?? asked[this.store.find(mode)?.Id ?? ''] ?? (mode === 'bridge' ? asked.default : undefined) ?? {}]);
      for (const [k, v] of Object.entries(asked)) {
        const n = this.store.find(k);
        if (!n || k === mode || n.Name === mode || n.Id === mode) continue;
        if (n.Driver === 'host' || n.Driver === 'null') throw invalid(`container cannot be connected to network ${k} and ${mode} at the same time`);
        requests.push([n.Name, v ?? {}]);
      }
    }
    for (const [ref, ep] of requests) {
      const n = this.store.find(ref);
      // 400 rather than 404: clients read a 404 from create as a missing image and try to pull.
      if (!n) throw invalid(`network ${ref} not found`);
      nets[n.Name] = this.endpointSettings(n, ep, rec);
    }
    portRequests(hc.PortBindings, rec.Config.ExposedPorts, !!hc.PublishAllPorts);
    for (const l of hc.Links ?? []) {
      const [target] = splitLink(l);
      if (!this.access().find(target)) throw notFound(`could not get container for ${target}`);
    }
    for (const h of hc.ExtraHosts ?? []) {
      const i = h.indexOf(':');
      const ip = i > 0 ? h.slice(i + 1) : '';
      if (i <= 0 || (ip !== 'host-gateway' && parseIp(ip) === undefined && !/^[0-9a-f:]+$/i.test(ip))) throw invalid(`invalid IP address in add-host: "${i > 0 ? ip : h}"`);
    }
    for (const d of hc.Dns ?? []) if (!parseUpstream(d)) throw invalid(`${d} is not an ip address`);
    rec.NetworkSettings.Networks = nets;
  }

  private endpointSettings(n: NetworkRecord, ep: EndpointRequest, rec: ContainerRecord): EndpointSettings {
    const user = !n.berth.predefined;
    const ip = ep.IPAMConfig?.IPv4Address;
    if (ip) {
      if (!user) throw invalid('user specified IP address is supported on user defined networks only');
      const sub = n.IPAM.Config[0] ? parseSubnet(n.IPAM.Config[0].Subnet) : undefined;
      const addr = parseIp(ip);
      if (addr === undefined) throw invalid(`invalid IPv4 address: ${ip}`);
      if (!sub || !contains(sub, addr)) throw invalid(`invalid endpoint settings:\nno configured subnet or ip-range contain the IP address ${ip}`);
    }
    if (ep.Aliases?.length && !user) throw invalid('network-scoped alias is supported only for containers in user defined networks');
    const mac = ep.MacAddress || (Object.keys(rec.NetworkSettings.Networks).length === 0 ? rec.Config.MacAddress : undefined) || '';
    if (mac && !/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/i.test(mac)) throw invalid(`invalid MAC address: ${mac}`);
    return {
      IPAMConfig: ip ? { IPv4Address: ip } : null,
      Links: ep.Links ?? null,
      Aliases: ep.Aliases?.length ? ep.Aliases : null,
      MacAddress: mac,
      DriverOpts: ep.DriverOpts ?? null,
      NetworkID: n.Id,
      EndpointID: '',
      Gateway: '',
      IPAddress: '',
      IPPrefixLen: 0,
      IPv6Gateway: '',
      GlobalIPv6Address: '',
      GlobalIPv6PrefixLen: 0,
      DNSNames: null,
    };
  }

  // ------------------------------------------------------------ containers: start and exit

  /**
   * Where a container's network will live and the hostname it gets. Known
   * before any plumbing, so that a start can write its bundle while
   * `setup` runs; throws what `setup` would for a mode that cannot start.
   */
  placement(rec: ContainerRecord): Pick<NetworkSetup, 'ns' | 'hostname'> {
    const mode = rec.HostConfig.NetworkMode;
    if (mode === 'host') return { ns: 'host', hostname: rec.Config.Hostname || osHostname() };
    if (mode.startsWith('container:')) {
      const other = this.joined(rec);
      const ns = this.sandboxes.exists(other.Id) ? { path: this.sandboxes.path(other.Id) } : { path: `/proc/${other.State.Pid}/ns/net` };
      return { ns, hostname: other.Config.Hostname };
    }
    if (mode === 'none') return { ns: 'private', hostname: rec.Config.Hostname };
    return { ns: { path: this.sandboxes.path(rec.Id) }, hostname: rec.Config.Hostname };
  }

  /** The running container whose namespace a `container:` mode joins. */
  private joined(rec: ContainerRecord): ContainerRecord {
    const ref = rec.HostConfig.NetworkMode.slice('container:'.length);
    const other = this.access().find(ref);
    if (!other) throw notFound(`No such container: ${ref}`);
    if (!other.State.Running) throw conflict(`cannot join network namespace of a non running container: ${other.Id}`);
    return other;
  }

  /** Everything a container's network mode needs before its process starts. */
  async setup(rec: ContainerRecord, place = this.placement(rec)): Promise<NetworkSetup> {
    const mode = rec.HostConfig.NetworkMode;
    if (mode === 'host') {
      return { ...place, hosts: await readFile('/etc/hosts', 'utf8').catch(() => hostsFile(place.hostname)), resolv: this.hostResolv };
    }
    if (mode.startsWith('container:')) {
      const other = this.joined(rec);
      const [hosts, resolv] = await Promise.all([readFile(other.HostsPath, 'utf8').catch(() => hostsFile(other.Config.Hostname)), readFile(other.ResolvConfPath, 'utf8').catch(() => '')]);
      return { ...place, hosts, resolv };
    }
    const extra = this.extraHosts(rec);
    if (mode === 'none') return { ...place, hosts: hostsFile(place.hostname, extra), resolv: this.resolvFor(rec, undefined) };
    const state = await this.plumb(rec);
    const first = state.endpoints[0];
    const links = this.linkHosts(rec);
    const dnsNet = state.endpoints.find((e) => this.dns.has(e.networkId));
    return {
      ns: { path: state.path },
      hostname: place.hostname,
      hosts: hostsFile(place.hostname, [...extra, ...links], first?.ip),
      resolv: this.resolvFor(rec, dnsNet?.gateway),
    };
  }

  private extraHosts(rec: ContainerRecord): Array<[string, string]> {
    const gw = this.store.find('bridge')?.IPAM.Config[0]?.Gateway ?? '';
    const out: Array<[string, string]> = [];
    for (const h of rec.HostConfig.ExtraHosts ?? []) {
      const i = h.indexOf(':');
      if (i <= 0) continue;
      const ip = h.slice(i + 1);
      out.push([h.slice(0, i), ip === 'host-gateway' ? gw : ip]);
    }
    return out;
  }

  /** /etc/hosts lines for --link on the default bridge: `ip alias id name`. */
  private linkHosts(rec: ContainerRecord): Array<[string, string]> {
    const out: Array<[string, string]> = [];
    for (const l of rec.HostConfig.Links ?? []) {
      const [target, alias] = splitLink(l);
      const t = this.access().find(target);
      const ip = t ? this.active.get(t.Id)?.endpoints[0]?.ip : undefined;
      if (!t || !ip) continue;
      const names = [...new Set([alias, shortId(t.Id), t.Name.slice(1)])];
      out.push([names.join(' '), ip]);
    }
    return out;
  }

  /** resolv.conf: the embedded DNS on user networks (with ndots:0 as docker), else the host's. */
  private resolvFor(rec: ContainerRecord, embedded: string | undefined): string {
    const hc = rec.HostConfig;
    // Daemon resolvers on loopback serve the embedded DNS only: useless inside a container's namespace.
    const daemonDns = (this.cfg.dns ?? []).map((d) => d.replace(/:\d+$/, '')).filter((d) => !d.startsWith('127.') && d !== '::1');
    if (!embedded) return resolvConf(this.hostResolv, { dns: hc.Dns?.length ? hc.Dns.map((d) => d.replace(/:\d+$/, '')) : daemonDns.length ? daemonDns : undefined, search: hc.DnsSearch, options: hc.DnsOptions });
    const base = resolvConf(this.hostResolv, { dns: [embedded], search: hc.DnsSearch, options: hc.DnsOptions?.length ? hc.DnsOptions : ['ndots:0'] });
    return base;
  }

  /**
   * Make the namespace with every endpoint and the published ports; all or
   * nothing: on any failure everything made so far is undone.
   */
  private async plumb(rec: ContainerRecord): Promise<SandboxState> {
    await this.teardown(rec);
    const hc = rec.HostConfig;
    const order = Object.keys(rec.NetworkSettings.Networks);
    const primary = this.store.find(hc.NetworkMode)?.Name;
    order.sort((a, b) => (a === primary ? -1 : b === primary ? 1 : 0));
    const state: SandboxState = { containerId: rec.Id, path: this.sandboxes.path(rec.Id), endpoints: [], ports: [] };
    const plumbing: Plumbing[] = [];
    let created = false;
    try {
      for (const name of order) {
        const n = this.store.find(name);
        if (!n) throw notFound(`network ${name} not found`);
        const [ep, how] = this.newEndpoint(n, rec.NetworkSettings.Networks[name]!, state.endpoints.length, rec, state.endpoints.length === 0);
        state.endpoints.push(ep);
        plumbing.push(how);
      }
      const reqs = portRequests(hc.PortBindings, rec.Config.ExposedPorts, !!hc.PublishAllPorts);
      const portEp = state.endpoints.find((e, i) => plumbing[i]!.kind === 'bridge');
      if (reqs.length && portEp) {
        const dev = plumbing[state.endpoints.indexOf(portEp)]!.device;
        const ports = await this.reservations.reserve(rec.Id, reqs, (r, port) => `driver failed programming external connectivity on endpoint ${rec.Name.slice(1)} (${portEp.endpointId}): failed to bind host port for ${r.hostIp}:${port}:${portEp.ip}:${r.containerPort}/${r.proto}`);
        state.ports = reqs.map((r, i): PortMapping => ({ proto: r.proto, hostIp: r.hostIp, hostPort: ports[i]!, containerIp: portEp.ip, containerPort: r.containerPort, device: dev }));
      }
      created = true;
      await this.sandboxes.create(rec.Id, state.endpoints[0] ? { ep: state.endpoints[0], how: plumbing[0]! } : undefined);
      for (let i = 1; i < state.endpoints.length; i++) await this.sandboxes.attach(rec.Id, state.endpoints[i]!, plumbing[i]!);
      this.active.set(rec.Id, state);
      if (state.ports.length) await this.syncFirewall();
      await this.sandboxes.saveState(state);
    } catch (err) {
      this.active.delete(rec.Id);
      for (const ep of state.endpoints) this.pools.get(ep.networkId)?.release(ep.ip);
      this.reservations.release(rec.Id);
      if (created) await this.sandboxes.destroy(rec.Id).catch(() => undefined);
      if (state.ports.length) await this.syncFirewall().catch(() => undefined);
      throw err;
    }
    this.publish(rec, state);
    return state;
  }

  private newEndpoint(n: NetworkRecord, es: EndpointSettings, index: number, rec: ContainerRecord, primary: boolean): [Endpoint, Plumbing] {
    const pool = this.pools.get(n.Id);
    if (!pool || (n.Driver !== 'bridge' && n.Driver !== 'macvlan')) throw invalid(`container cannot be connected to network ${n.Name}`);
    const want = (es.IPAMConfig as { IPv4Address?: string } | null | undefined)?.IPv4Address;
    const ip = pool.allocate(want || undefined);
    const ipam = n.IPAM.Config[0]!;
    const epId = newId();
    const ep: Endpoint = {
      networkId: n.Id,
      endpointId: epId,
      iface: `eth${index}`,
      hostIface: n.Driver === 'bridge' ? `veth${epId.slice(0, 7)}` : '',
      ip,
      prefix: parseSubnet(ipam.Subnet).prefix,
      gateway: n.Internal ? '' : ipam.Gateway ?? '',
      mac: es.MacAddress || (n.Driver === 'bridge' ? macForIp(ip) : randomMac()),
      aliases: es.Aliases ?? [],
    };
    return [ep, { kind: n.Driver, device: n.berth.device, mtu: mtuOf(n), defaultRoute: primary && !n.Internal }];
  }

  /** Show a running container's addresses and ports in its record (inspect). */
  private publish(rec: ContainerRecord, state: SandboxState): void {
    const ns = rec.NetworkSettings as ContainerRecord['NetworkSettings'] & Record<string, unknown>;
    ns.SandboxID = rec.Id;
    ns.SandboxKey = state.path;
    for (const ep of state.endpoints) {
      const n = this.store.find(ep.networkId);
      const es = n ? ns.Networks[n.Name] : undefined;
      if (!n || !es) continue;
      Object.assign(es, { EndpointID: ep.endpointId, Gateway: ep.gateway, IPAddress: ep.ip, IPPrefixLen: ep.prefix, MacAddress: ep.mac, DNSNames: n.berth.predefined ? null : this.namesOf(rec, ep).filter((x, i, a) => a.indexOf(x) === i) });
      if (n.Name === 'bridge') Object.assign(ns, { EndpointID: ep.endpointId, Gateway: ep.gateway, IPAddress: ep.ip, IPPrefixLen: ep.prefix, MacAddress: ep.mac });
    }
    const ports: Record<string, Array<{ HostIp: string; HostPort: string }> | null> = {};
    for (const key of Object.keys(rec.Config.ExposedPorts ?? {})) ports[key.includes('/') ? key : `${key}/tcp`] = null;
    for (const p of state.ports) {
      const key = `${p.containerPort}/${p.proto}`;
      (ports[key] ??= []).push({ HostIp: p.hostIp, HostPort: String(p.hostPort) });
    }
    ns.Ports = ports;
  }

  /**
   * After the container's exit (or a failed start): give back everything its
   * network took. Addresses, ports and firewall rules are released before
   * this returns; with `background`, the namespace's removal may finish
   * later (nothing can reuse it meanwhile: a new namespace for the same
   * container waits for it), which keeps it off the path of `run --rm`.
   */
  async teardown(rec: ContainerRecord, opts: { background?: boolean } = {}): Promise<void> {
    const state = this.active.get(rec.Id);
    this.active.delete(rec.Id);
    this.reservations.release(rec.Id);
    for (const ep of state?.endpoints ?? []) this.pools.get(ep.networkId)?.release(ep.ip);
    const ns = rec.NetworkSettings as ContainerRecord['NetworkSettings'] & Record<string, unknown>;
    if (state || ns.SandboxKey) {
      for (const es of Object.values(ns.Networks)) Object.assign(es, { EndpointID: '', Gateway: '', IPAddress: '', IPPrefixLen: 0, DNSNames: null, ...(es.IPAMConfig ? {} : { MacAddress: '' }) });
      for (const k of ['EndpointID', 'Gateway', 'IPAddress', 'IPPrefixLen', 'MacAddress']) delete ns[k];
      ns.SandboxKey = '';
      ns.SandboxID = '';
      ns.Ports = {};
    }
    if (state || this.sandboxes.exists(rec.Id)) {
      const removed = this.sandboxes.destroy(rec.Id);
      if (opts.background) removed.catch((err) => log.warn('removing a network namespace failed', { id: rec.Id, error: errorMessage(err) }));
      else await removed;
    }
    if (state?.ports.length) await this.syncFirewall();
  }

  // ------------------------------------------------------------ connect and disconnect

  async connect(netRef: string, ctrRef: string, req: EndpointRequest): Promise<void> {
    const n = this.store.mustFind(netRef);
    const rec = this.access().find(ctrRef);
    if (!rec) throw notFound(`No such container: ${ctrRef}`);
    const mode = rec.HostConfig.NetworkMode;
    if (n.Driver === 'host' || n.Driver === 'null' || mode === 'host' || mode === 'none' || mode.startsWith('container:')) {
      throw forbidden('container sharing network namespace with another container or host cannot be connected to any other network');
    }
    if (rec.NetworkSettings.Networks[n.Name]) throw forbidden(`endpoint with name ${rec.Name.slice(1)} already exists in network ${n.Name}`);
    const es = this.endpointSettings(n, req, rec);
    const state = this.active.get(rec.Id);
    if (rec.State.Running && state) {
      const [ep, how] = this.newEndpoint(n, es, nextIndex(state), rec, false);
      try {
        await this.sandboxes.attach(rec.Id, ep, how);
      } catch (err) {
        this.pools.get(n.Id)?.release(ep.ip);
        throw new BerthError('System', `failed to connect ${rec.Name.slice(1)} to ${n.Name}: ${errorMessage(err)}`);
      }
      state.endpoints.push(ep);
      await this.sandboxes.saveState(state);
      rec.NetworkSettings.Networks[n.Name] = es;
      this.publish(rec, state);
    } else {
      rec.NetworkSettings.Networks[n.Name] = es;
    }
    await this.access().save(rec);
    this.events.emit('network', 'connect', n.Id, { container: rec.Id, name: n.Name, type: n.Driver });
  }

  async disconnect(netRef: string, ctrRef: string, force: boolean): Promise<void> {
    const n = this.store.mustFind(netRef);
    const rec = this.access().find(ctrRef);
    if (!rec) {
      if (force) return;
      throw notFound(`No such container: ${ctrRef}`);
    }
    if (n.Driver === 'host' || n.Driver === 'null') throw forbidden(`container cannot be disconnected from host network or connected to host network`);
    if (!rec.NetworkSettings.Networks[n.Name]) throw forbidden(`container ${rec.Id} is not connected to network ${n.Name}`);
    const state = this.active.get(rec.Id);
    const ep = state?.endpoints.find((e) => e.networkId === n.Id);
    if (state && ep) {
      await this.sandboxes.detach(rec.Id, ep);
      this.pools.get(n.Id)?.release(ep.ip);
      state.endpoints = state.endpoints.filter((e) => e !== ep);
      const hadPorts = state.ports.some((p) => p.containerIp === ep.ip);
      state.ports = state.ports.filter((p) => p.containerIp !== ep.ip);
      await this.sandboxes.saveState(state);
      if (hadPorts) await this.syncFirewall();
    }
    delete rec.NetworkSettings.Networks[n.Name];
    await this.access().save(rec);
    this.events.emit('network', 'disconnect', n.Id, { container: rec.Id, name: n.Name, type: n.Driver });
  }
}

function nextIndex(state: SandboxState): number {
  const used = new Set(state.endpoints.map((e) => e.iface));
  let i = 0;
  while (used.has(`eth${i}`)) i++;
  return i;
}

function mtuOf(n: NetworkRecord): number | undefined {
  const v = n.Options[MTU_OPT];
  return v && !n.berth.predefined ? Number(v) : undefined;
}

/** `name:alias` (or `name`) of --link; the name may carry docker's leading slash. */
export function splitLink(l: string): [string, string] {
  const [target = '', alias] = l.replace(/^\//, '').split(':');
  return [target, (alias ?? target).replace(/^.*\//, '')];
}
