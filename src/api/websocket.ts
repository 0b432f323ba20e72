/**
 * A WebSocket server endpoint (RFC 6455) on top of Node's HTTP upgrade: the
 * opening handshake, the frame codec (masking, 7/16/64-bit lengths,
 * fragmentation), ping/pong and the closing handshake. It carries the
 * container attach websocket (GET /containers/{id}/attach/ws).
 */
import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { invalid } from '../util/errors.ts';

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

export const OP_CONTINUATION = 0x0;
export const OP_TEXT = 0x1;
export const OP_BINARY = 0x2;
export const OP_CLOSE = 0x8;
export const OP_PING = 0x9;
export const OP_PONG = 0xa;

/** Largest message berthd accepts from a client (a stdin chunk). */
export const MAX_MESSAGE = 16 << 20;

export interface WsFrame {
  fin: boolean;
  opcode: number;
  masked: boolean;
  payload: Buffer;
}

/** The Sec-WebSocket-Accept value for a client's Sec-WebSocket-Key. */
export function acceptKey(key: string): string {
  return createHash('sha1').update(key + GUID).digest('base64');
}

/** Encode one frame; a client sends with `mask` (4 bytes), a server without. */
export function encodeWsFrame(opcode: number, payload: Buffer, opts: { fin?: boolean; mask?: Buffer } = {}): Buffer {
  const fin = opts.fin ?? true;
  const len = payload.length;
  const ext = len < 126 ? 0 : len < 65536 ? 2 : 8;
  const maskLen = opts.mask ? 4 : 0;
  const out = Buffer.allocUnsafe(2 + ext + maskLen + len);
  out[0] = (fin ? 0x80 : 0) | (opcode & 0x0f);
  out[1] = (opts.mask ? 0x80 : 0) | (ext === 0 ? len : ext === 2 ? 126 : 127);
  if (ext === 2) out.writeUInt16BE(len, 2);
  else if (ext === 8) out.writeBigUInt64BE(BigInt(len), 2);
  const off = 2 + ext;
  if (opts.mask) {
    opts.mask.copy(out, off, 0, 4);
    for (let i = 0; i < len; i++) out[off + 4 + i] = payload[i]! ^ opts.mask[i & 3]!;
  } else {
    payload.copy(out, off);
  }
  return out;
}

export class WsProtocolError extends Error {
  readonly code: number;
  constructor(code: number, message: string) {
    super(message);
    this.code = code;
  }
}

/** Reassembles frames from a byte stream and unmasks their payloads. */
export class WsFrameParser {
  private buf: Buffer = Buffer.alloc(0);
  private readonly maxFrame: number;

  constructor(maxFrame = MAX_MESSAGE) {
    this.maxFrame = maxFrame;
  }

  push(chunk: Buffer): WsFrame[] {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    const frames: WsFrame[] = [];
    for (;;) {
      const b = this.buf;
      if (b.length < 2) break;
      const fin = (b[0]! & 0x80) !== 0;
      if ((b[0]! & 0x70) !== 0) throw new WsProtocolError(1002, 'reserved bits set without an extension');
      const opcode = b[0]! & 0x0f;
      const masked = (b[1]! & 0x80) !== 0;
      let len = b[1]! & 0x7f;
      let off = 2;
      if (len === 126) {
        if (b.length < 4) break;
        len = b.readUInt16BE(2);
        off = 4;
      } else if (len === 127) {
        if (b.length < 10) break;
        const big = b.readBigUInt64BE(2);
        if (big > BigInt(this.maxFrame)) throw new WsProtocolError(1009, 'frame too large');
        len = Number(big);
        off = 10;
      }
      if (len > this.maxFrame) throw new WsProtocolError(1009, 'frame too large');
      if (opcode >= 0x8 && (len > 125 || !fin)) throw new WsProtocolError(1002, 'bad control frame');
      const need = off + (masked ? 4 : 0) + len;
      if (b.length < need) break;
      let payload: Buffer;
      if (masked) {
        const mask = b.subarray(off, off + 4);
        payload = Buffer.allocUnsafe(len);
        for (let i = 0; i < len; i++) payload[i] = b[off + 4 + i]! ^ mask[i & 3]!;
      } else {
        payload = Buffer.from(b.subarray(off, off + len));
      }
      frames.push({ fin, opcode, masked, payload });
      this.buf = b.subarray(need);
    }
    return frames;
  }
}

/**
 * A server-side connection. Events: `message` (Buffer, isBinary), `close`
 * (the socket is gone), `closing` (the client sent a close frame).
 */
export class WebSocketConnection extends EventEmitter {
  private readonly sock: Duplex;
  private readonly parser = new WsFrameParser();
  private fragments: Buffer[] = [];
  private fragmentOp = 0;
  private fragmentLen = 0;
  private closeSent = false;

  constructor(sock: Duplex, head: Buffer) {
    super();
    this.sock = sock;
    sock.on('data', (d: Buffer) => this.onData(d));
    sock.on('error', () => undefined);
    sock.once('close', () => this.emit('close'));
    if (head.length) queueMicrotask(() => this.onData(head));
  }

  private onData(d: Buffer): void {
    let frames: WsFrame[];
    try {
      frames = this.parser.push(d);
    } catch (err) {
      this.fail(err instanceof WsProtocolError ? err.code : 1002, (err as Error).message);
      return;
    }
    for (const f of frames) {
      if (this.sock.destroyed) return;
      // RFC 6455 5.1: every frame from a client is masked.
      if (!f.masked) return this.fail(1002, 'client frames must be masked');
      switch (f.opcode) {
        case OP_PING:
          this.sendFrame(OP_PONG, f.payload);
          break;
        case OP_PONG:
          break;
        case OP_CLOSE: {
          this.emit('closing');
          const code = f.payload.length >= 2 ? f.payload.readUInt16BE(0) : 1000;
          this.close(code === 1005 || code === 1006 ? 1000 : code);
          break;
        }
        case OP_TEXT:
        case OP_BINARY:
          if (this.fragments.length) return this.fail(1002, 'new message inside a fragmented one');
          if (f.fin) this.emit('message', f.payload, f.opcode === OP_BINARY);
          else this.startFragments(f);
          break;
        case OP_CONTINUATION:
          if (!this.fragments.length) return this.fail(1002, 'continuation without a message');
          this.fragments.push(f.payload);
          this.fragmentLen += f.payload.length;
          if (this.fragmentLen > MAX_MESSAGE) return this.fail(1009, 'message too large');
          if (f.fin) {
            const msg = Buffer.concat(this.fragments);
            const bin = this.fragmentOp === OP_BINARY;
            this.fragments = [];
            this.fragmentLen = 0;
            this.emit('message', msg, bin);
          }
          break;
        default:
          return this.fail(1002, `unknown opcode ${f.opcode}`);
      }
    }
  }

  private startFragments(f: WsFrame): void {
    this.fragments = [f.payload];
    this.fragmentOp = f.opcode;
    this.fragmentLen = f.payload.length;
  }

  private sendFrame(op: number, payload: Buffer): void {
    if (!this.sock.destroyed && this.sock.writable) this.sock.write(encodeWsFrame(op, payload));
  }

  /** Send one message (binary or text frame). */
  send(data: Buffer, binary = true): void {
    if (this.closeSent) return;
    this.sendFrame(binary ? OP_BINARY : OP_TEXT, data);
  }

  /** Start (or answer) the closing handshake, then end the TCP stream. */
  close(code = 1000, reason = ''): void {
    if (this.closeSent) return;
    this.closeSent = true;
    const r = Buffer.from(reason);
    const p = Buffer.allocUnsafe(2 + r.length);
    p.writeUInt16BE(code, 0);
    r.copy(p, 2);
    this.sendFrame(OP_CLOSE, p);
    if (!this.sock.destroyed) this.sock.end();
  }

  private fail(code: number, reason: string): void {
    this.close(code, reason);
    this.sock.destroy();
  }
}

/**
 * Check a client's opening handshake and answer 101. Throws (before
 * anything is written) when the request is not a valid WebSocket upgrade.
 */
export function acceptWebSocket(req: IncomingMessage, sock: Duplex, head: Buffer, headers: Record<string, string> = {}): WebSocketConnection {
  const upgrade = String(req.headers.upgrade ?? '').toLowerCase();
  const key = String(req.headers['sec-websocket-key'] ?? '');
  if (req.method !== 'GET' || upgrade !== 'websocket') throw invalid('websocket: the client is not using the websocket protocol: \'upgrade\' token not found in \'Upgrade\' header');
  if (String(req.headers['sec-websocket-version'] ?? '') !== '13') throw invalid('websocket: unsupported version: 13 not found in \'Sec-Websocket-Version\' header');
  if (Buffer.from(key, 'base64').length !== 16) throw invalid('websocket: not a websocket handshake: \'Sec-WebSocket-Key\' header must be Base64 encoded value of 16-byte in length');
  const lines = ['HTTP/1.1 101 Switching Protocols', 'Upgrade: websocket', 'Connection: Upgrade', `Sec-WebSocket-Accept: ${acceptKey(key)}`];
  for (const [k, v] of Object.entries(headers)) lines.push(`${k}: ${v}`);
  sock.write(lines.join('\r\n') + '\r\n\r\n');
  return new WebSocketConnection(sock, head);
}
