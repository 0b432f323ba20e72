/** What berth keeps about a network; `network inspect` serves it with the endpoints added. */
export interface IpamConfig {
  Subnet: string;
  Gateway?: string;
  IPRange?: string;
  AuxiliaryAddresses?: Record<string, string>;
}

export interface NetworkRecord {
  Name: string;
  Id: string;
  Created: string;
  Scope: 'local';
  Driver: 'bridge' | 'macvlan' | 'host' | 'null';
  EnableIPv4: boolean;
  EnableIPv6: boolean;
  IPAM: { Driver: string; Options: Record<string, string> | null; Config: IpamConfig[] };
  Internal: boolean;
  Attachable: boolean;
  Ingress: boolean;
  ConfigFrom: { Network: string };
  ConfigOnly: boolean;
  Options: Record<string, string>;
  Labels: Record<string, string>;
  /** berth's own: the host device (bridge name, or the macvlan parent). */
  berth: { device: string; predefined?: boolean };
}

/** One container's attachment to one network while it runs. */
export interface Endpoint {
  networkId: string;
  endpointId: string;
  /** Interface name inside the container (eth0, eth1, …). */
  iface: string;
  /** Host side of the veth pair (empty for macvlan). */
  hostIface: string;
  ip: string;
  prefix: number;
  gateway: string;
  mac: string;
  aliases: string[];
}

/** A published port as programmed: host side and container side. */
export interface PortMapping {
  proto: 'tcp' | 'udp';
  hostIp: string;
  hostPort: number;
  containerIp: string;
  containerPort: number;
  device: string;
}

/** The runtime network state of a running container, kept in the exec root. */
export interface SandboxState {
  containerId: string;
  path: string;
  endpoints: Endpoint[];
  ports: PortMapping[];
}
