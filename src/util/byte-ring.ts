/**
 * A one-way byte pipe between two threads over shared memory: one producer
 * (the main thread) copies chunks in and waits without blocking when the ring
 * is full; one consumer (a worker) reads synchronously and sleeps in
 * Atomics.wait when it is empty. The consumer's loop then needs no promise or
 * event-loop turn per read, which is what makes it cheap to run a tar
 * extraction on it entry by entry.
 */

/** Indexes into the control words. */
const USED = 0;
const INPUT = 1;
const OUTPUT = 2;
/**
 * Bumped by each side on every change it makes; the other side sleeps on the
 * value it saw before looking at the state, so a change made between the look
 * and the sleep is never missed.
 */
const PRODUCER_SEQ = 3;
const CONSUMER_SEQ = 4;

/** INPUT: what the producer says about the bytes to come. */
const INPUT_OPEN = 0;
const INPUT_END = 1;
const INPUT_ABORTED = 2;

/** OUTPUT: what the consumer says about its reading. */
export const CONSUMER_READING = 0;
/** The consumer needs nothing more; the rest of the input may be dropped. */
export const CONSUMER_DONE = 1;
/** The consumer failed; the producer should stop reading its source. */
export const CONSUMER_FAILED = 2;

/** The shared state, sent to the consumer's thread (postMessage shares, not copies, it). */
export interface ByteRing {
  ctl: SharedArrayBuffer;
  data: SharedArrayBuffer;
}

export function createByteRing(size: number): ByteRing {
  return { ctl: new SharedArrayBuffer(5 * Int32Array.BYTES_PER_ELEMENT), data: new SharedArrayBuffer(size) };
}

/** Thrown to the consumer when the producer gave up (its source failed). */
export class RingAborted extends Error {
  constructor() {
    super('input aborted by its producer');
  }
}

export class RingWriter {
  private readonly ctl: Int32Array;
  private readonly data: Uint8Array;
  private pos = 0;

  constructor(ring: ByteRing) {
    this.ctl = new Int32Array(ring.ctl);
    this.data = new Uint8Array(ring.data);
  }

  /** What the consumer last said: CONSUMER_READING, CONSUMER_DONE or CONSUMER_FAILED. */
  get consumer(): number {
    return Atomics.load(this.ctl, OUTPUT);
  }

  /**
   * Copies `chunk` in, waiting for room as needed. Returns false, having
   * copied only part or none, once the consumer has stopped reading.
   */
  async write(chunk: Uint8Array): Promise<boolean> {
    const cap = this.data.length;
    let off = 0;
    while (off < chunk.length) {
      const seq = Atomics.load(this.ctl, CONSUMER_SEQ);
      if (this.consumer !== CONSUMER_READING) return false;
      const used = Atomics.load(this.ctl, USED);
      if (used === cap) {
        const w = Atomics.waitAsync(this.ctl, CONSUMER_SEQ, seq);
        if (w.async) await w.value;
        continue;
      }
      const n = Math.min(cap - used, chunk.length - off, cap - this.pos);
      this.data.set(chunk.subarray(off, off + n), this.pos);
      this.pos = (this.pos + n) % cap;
      off += n;
      Atomics.add(this.ctl, USED, n);
      this.signal();
    }
    return this.consumer === CONSUMER_READING;
  }

  /** No more bytes: the consumer sees the end of its input after what is in the ring. */
  end(): void {
    this.setInput(INPUT_END);
  }

  /** The input failed: the consumer's next read throws RingAborted. */
  abort(): void {
    this.setInput(INPUT_ABORTED);
  }

  /**
   * The consumer's thread died without saying so: let a write waiting for
   * room return instead of waiting forever.
   */
  consumerGone(): void {
    Atomics.compareExchange(this.ctl, OUTPUT, CONSUMER_READING, CONSUMER_FAILED);
    Atomics.add(this.ctl, CONSUMER_SEQ, 1);
    Atomics.notify(this.ctl, CONSUMER_SEQ);
  }

  private setInput(state: number): void {
    Atomics.compareExchange(this.ctl, INPUT, INPUT_OPEN, state);
    this.signal();
  }

  private signal(): void {
    Atomics.add(this.ctl, PRODUCER_SEQ, 1);
    Atomics.notify(this.ctl, PRODUCER_SEQ);
  }
}

/**
 * The consumer side. Views handed out by peek() stay valid until the next
 * consume(); room is given back to the producer in batches, since waking it
 * per tar header would cost more than the copy.
 */
export class RingReader {
  private readonly ctl: Int32Array;
  private readonly data: Buffer;
  private pos = 0;
  /** Bytes consumed here but not yet returned to the producer. */
  private unreleased = 0;
  /** Bytes known to be readable (USED at the last look, minus what was consumed since). */
  private avail = 0;

  constructor(ring: ByteRing) {
    this.ctl = new Int32Array(ring.ctl);
    this.data = Buffer.from(ring.data);
  }

  /**
   * A view of the next bytes, at most `max` and never across the ring's end;
   * blocks until at least one byte is there. Null at the end of the input.
   */
  peek(max: number): Buffer | null {
    while (this.avail === 0) {
      // Room must go back before sleeping, or a full ring would never refill.
      this.release();
      const seq = Atomics.load(this.ctl, PRODUCER_SEQ);
      // The input state first: a producer writes its last bytes before it
      // ends, so an end seen here means USED below already counts them.
      const input = Atomics.load(this.ctl, INPUT);
      if (input === INPUT_ABORTED) throw new RingAborted();
      const used = Atomics.load(this.ctl, USED);
      if (used > 0) {
        this.avail = used;
        break;
      }
      if (input === INPUT_END) return null;
      Atomics.wait(this.ctl, PRODUCER_SEQ, seq);
    }
    if (Atomics.load(this.ctl, INPUT) === INPUT_ABORTED) throw new RingAborted();
    const n = Math.min(max, this.avail, this.data.length - this.pos);
    return this.data.subarray(this.pos, this.pos + n);
  }

  /** Moves past `n` bytes of what peek() returned. */
  consume(n: number): void {
    this.pos = (this.pos + n) % this.data.length;
    this.avail -= n;
    this.unreleased += n;
    if (this.unreleased >= this.data.length >> 3) this.release();
  }

  /** Exactly `n` bytes, copied out; fewer only when the input ends first. */
  readExact(n: number): Buffer {
    const out = Buffer.allocUnsafe(n);
    let off = 0;
    while (off < n) {
      const v = this.peek(n - off);
      if (v === null) return out.subarray(0, off);
      v.copy(out, off);
      off += v.length;
      this.consume(v.length);
    }
    return out;
  }

  /** Skips `n` bytes; returns how many there were before the input ended. */
  skip(n: number): number {
    let left = n;
    while (left > 0) {
      const v = this.peek(left);
      if (v === null) break;
      this.consume(v.length);
      left -= v.length;
    }
    return n - left;
  }

  /** Says the consumer is finished (ok or not) so the producer stops waiting on it. */
  stop(state: typeof CONSUMER_DONE | typeof CONSUMER_FAILED): void {
    this.release();
    Atomics.compareExchange(this.ctl, OUTPUT, CONSUMER_READING, state);
    this.signal();
  }

  private release(): void {
    if (this.unreleased === 0) return;
    Atomics.sub(this.ctl, USED, this.unreleased);
    this.unreleased = 0;
    this.signal();
  }

  private signal(): void {
    Atomics.add(this.ctl, CONSUMER_SEQ, 1);
    Atomics.notify(this.ctl, CONSUMER_SEQ);
  }
}
