import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { acceptKey, encodeWsFrame, WsFrameParser, WebSocketConnection, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_CONTINUATION } from '../../src/api/websocket.ts';

test('handshake accept key (RFC 6455 section 1.3 example)', () => {
  assert.equal(acceptKey('dGhlIHNhbXBsZSBub25jZQ=='), 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=');
});

test('frame encoding matches the RFC 6455 section 5.7 examples', () => {
  assert.deepEqual([...encodeWsFrame(OP_TEXT, Buffer.from('Hello'))], [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
  const masked = encodeWsFrame(OP_TEXT, Buffer.from('Hello'), { mask: Buffer.from([0x37, 0xfa, 0x21, 0x3d]) });
  assert.deepEqual([...masked], [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]);
  assert.deepEqual([...encodeWsFrame(OP_TEXT, Buffer.from('Hel'), { fin: false })].slice(0, 2), [0x01, 0x03]);
  assert.deepEqual([...encodeWsFrame(OP_CONTINUATION, Buffer.from('lo'))].slice(0, 2), [0x80, 0x02]);
  // 256 bytes: 16-bit length; 64 KiB: 64-bit length.
  assert.deepEqual([...encodeWsFrame(OP_BINARY, Buffer.alloc(256))].slice(0, 4), [0x82, 0x7e, 0x01, 0x00]);
  assert.deepEqual([...encodeWsFrame(OP_BINARY, Buffer.alloc(65536))].slice(0, 10), [0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0]);
});

test('the parser reassembles frames split anywhere and unmasks them', () => {
  const mask = Buffer.from([1, 2, 3, 4]);
  const big = Buffer.alloc(70000, 7);
  const stream = Buffer.concat([
    encodeWsFrame(OP_TEXT, Buffer.from('Hello'), { mask }),
    encodeWsFrame(OP_BINARY, big, { mask }),
    encodeWsFrame(OP_PING, Buffer.from('p'), { mask }),
  ]);
  const p = new WsFrameParser();
  const frames = [];
  for (let i = 0; i < stream.length; i += 333) frames.push(...p.push(stream.subarray(i, i + 333)));
  assert.equal(frames.length, 3);
  assert.equal(frames[0]!.payload.toString(), 'Hello');
  assert.equal(frames[0]!.masked, true);
  assert.ok(frames[1]!.payload.equals(big));
  assert.equal(frames[2]!.opcode, OP_PING);
  assert.throws(() => new WsFrameParser(100).push(encodeWsFrame(OP_BINARY, Buffer.alloc(200))), /too large/);
  assert.throws(() => new WsFrameParser().push(Buffer.from([0x89, 0x7e, 0, 200])), /bad control frame/);
  assert.throws(() => new WsFrameParser().push(Buffer.from([0xc1, 0x00])), /reserved bits/);
});

/** A connection over an in-memory socket: bytes pushed are what the client sent; writes are captured. */
function pair() {
  const sock = new PassThrough();
  const fromServer: Buffer[] = [];
  const fake = sock as unknown as { write: (d: Buffer) => boolean; end: () => void };
  fake.write = (d) => { fromServer.push(d); return true; };
  fake.end = () => undefined;
  const conn = new WebSocketConnection(sock, Buffer.alloc(0));
  return {
    conn,
    send: (b: Buffer) => { sock.push(b); },
    sent: () => new WsFrameParser().push(Buffer.concat(fromServer)),
  };
}

test('server connection: messages, fragments, ping, close, and unmasked frames refused', async () => {
  const mask = Buffer.from([9, 8, 7, 6]);
  const { conn, send, sent } = pair();
  const got: Array<[string, boolean]> = [];
  conn.on('message', (m: Buffer, bin: boolean) => got.push([m.toString(), bin]));
  let closing = false;
  conn.on('closing', () => { closing = true; });
  send(encodeWsFrame(OP_TEXT, Buffer.from('one'), { mask }));
  send(encodeWsFrame(OP_BINARY, Buffer.from('tw'), { mask, fin: false }));
  send(encodeWsFrame(OP_PING, Buffer.from('hi'), { mask }));
  send(encodeWsFrame(OP_CONTINUATION, Buffer.from('o'), { mask }));
  send(encodeWsFrame(OP_CLOSE, Buffer.from([0x03, 0xe8]), { mask }));
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(got, [['one', false], ['two', true]]);
  assert.equal(closing, true);
  const out = sent();
  assert.equal(out[0]!.opcode, OP_PONG);
  assert.equal(out[0]!.payload.toString(), 'hi');
  assert.equal(out[0]!.masked, false);
  assert.equal(out[1]!.opcode, OP_CLOSE);
  assert.equal(out[1]!.payload.readUInt16BE(0), 1000);

  const b = pair();
  let msgs = 0;
  b.conn.on('message', () => msgs++);
  b.send(encodeWsFrame(OP_TEXT, Buffer.from('unmasked')));
  await new Promise((r) => setImmediate(r));
  assert.equal(msgs, 0);
  const closeFrame = b.sent()[0]!;
  assert.equal(closeFrame.opcode, OP_CLOSE);
  assert.equal(closeFrame.payload.readUInt16BE(0), 1002);
});
