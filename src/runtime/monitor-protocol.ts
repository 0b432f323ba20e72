/**
 * The frame format spoken on a container monitor's control socket
 * (DIR/monitor.sock). The monitor itself is native/berth-monitor.c; the
 * protocol is described in native/PROTOCOL.md. Both sides use the same
 * framing: one type byte, a 4-byte big-endian payload length, the payload.
 */
import { Buffer } from 'node:buffer';
import { invalid } from '../util/errors.ts';

// monitor → client
export const FRAME_STDOUT = 1;
export const FRAME_STDERR = 2;
export const FRAME_EXIT = 3;
export const FRAME_STARTED = 4;
export const FRAME_START_FAILED = 5;
export const FRAME_STATE = 6;
/** Sent after EXIT once the runtime state and the root mount are gone. */
export const FRAME_CLEANED = 7;

// client → monitor
export const FRAME_HELLO = 16;
export const FRAME_START = 17;
export const FRAME_STDIN = 18;
export const FRAME_STDIN_CLOSE = 19;
export const FRAME_RESIZE = 20;
export const FRAME_SHUTDOWN = 21;

export const FRAME_HEADER_SIZE = 5;

/** The monitor refuses client frames larger than this (it drops the connection). */
export const MAX_CLIENT_FRAME = 1 << 20;

/** Default ceiling for frames a decoder accepts; the monitor sends at most 32 KiB of output per frame. */
export const DEFAULT_MAX_FRAME = 16 << 20;

export interface Frame {
  type: number;
  payload: Buffer;
}

/** Payload of EXIT, and the content of DIR/exit after a normal exit. */
export interface ExitPayload {
  exitCode: number;
  /** The signal that killed the process (exitCode is then 128 + signal), else 0. */
  signal: number;
  /** RFC 3339 with nanoseconds, UTC. */
  finishedAt: string;
}

/** Content of DIR/exit when the runtime could not start the process. */
export interface StartFailedRecord {
  startFailed: true;
  message: string;
}

export type ExitRecord = ExitPayload | StartFailedRecord;

export interface StartedPayload {
  pid: number;
}

export interface StartFailedPayload {
  message: string;
}

export type MonitorStatus = 'created' | 'running' | 'exited';

/** Reply to HELLO; also sent unasked to a client that connects after the exit. */
export interface StatePayload {
  status: MonitorStatus;
  pid: number;
  /** -1 when the start failed (startFailed is then true). */
  exitCode: number;
  signal?: number;
  finishedAt?: string;
  startFailed?: boolean;
  message?: string;
}

export interface HelloPayload {
  stdout: boolean;
  stderr: boolean;
}

export interface ResizePayload {
  h: number;
  w: number;
}

export function encodeFrame(type: number, payload: Buffer | string = Buffer.alloc(0)): Buffer {
  if (!Number.isInteger(type) || type < 0 || type > 255) throw invalid(`bad monitor frame type ${type}`);
  const body = typeof payload === 'string' ? Buffer.from(payload, 'utf8') : payload;
  const out = Buffer.allocUnsafe(FRAME_HEADER_SIZE + body.length);
  out[0] = type;
  out.writeUInt32BE(body.length, 1);
  body.copy(out, FRAME_HEADER_SIZE);
  return out;
}

export function encodeJsonFrame(type: number, value: unknown): Buffer {
  return encodeFrame(type, JSON.stringify(value));
}

/**
 * Reassembles frames from a byte stream. push() returns the frames each chunk
 * completes; an oversized length prefix throws, since the stream can no longer
 * be trusted after it.
 */
export class FrameDecoder {
  readonly maxFrame: number;
  #pending: Buffer[] = [];
  #pendingLength = 0;

  constructor(maxFrame: number = DEFAULT_MAX_FRAME) {
    this.maxFrame = maxFrame;
  }

  /** Bytes received but not yet part of a complete frame. */
  get buffered(): number {
    return this.#pendingLength;
  }

  push(chunk: Buffer): Frame[] {
    if (chunk.length > 0) {
      this.#pending.push(chunk);
      this.#pendingLength += chunk.length;
    }
    const frames: Frame[] = [];
    if (this.#pendingLength < FRAME_HEADER_SIZE) return frames;
    let data = this.#pending.length === 1 ? this.#pending[0]! : Buffer.concat(this.#pending, this.#pendingLength);
    let off = 0;
    while (data.length - off >= FRAME_HEADER_SIZE) {
      const len = data.readUInt32BE(off + 1);
      if (len > this.maxFrame) throw invalid(`monitor frame of ${len} bytes exceeds the limit of ${this.maxFrame}`);
      if (data.length - off < FRAME_HEADER_SIZE + len) break;
      const start = off + FRAME_HEADER_SIZE;
      // Copy so a small frame does not pin a large read buffer.
      frames.push({ type: data[off]!, payload: Buffer.from(data.subarray(start, start + len)) });
      off = start + len;
    }
    data = data.subarray(off);
    this.#pending = data.length > 0 ? [data] : [];
    this.#pendingLength = data.length;
    return frames;
  }
}

/** Parses a JSON frame payload; a malformed payload is a protocol error. */
export function parsePayload<T>(frame: Frame): T {
  try {
    return JSON.parse(frame.payload.toString('utf8')) as T;
  } catch {
    throw invalid(`monitor sent a malformed payload in frame type ${frame.type}`);
  }
}

export function isStartFailedRecord(rec: ExitRecord): rec is StartFailedRecord {
  return (rec as StartFailedRecord).startFailed === true;
}
