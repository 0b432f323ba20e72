import { randomBytes } from 'node:crypto';

/** A 64-hex-digit random ID, as docker uses for containers, execs and networks. */
export function newId(): string {
  return randomBytes(32).toString('hex');
}

export function shortId(id: string): string {
  return id.replace(/^sha256:/, '').slice(0, 12);
}

const ADJECTIVES = ['admiring', 'agile', 'amazing', 'bold', 'brave', 'busy', 'calm', 'clever', 'cool', 'dreamy', 'eager', 'elastic', 'festive', 'focused', 'gallant', 'gentle', 'happy', 'hopeful', 'jolly', 'keen', 'kind', 'laughing', 'lucid', 'modest', 'nifty', 'noble', 'quirky', 'serene', 'sharp', 'silly', 'stoic', 'sweet', 'tender', 'trusting', 'upbeat', 'vibrant', 'wizardly', 'zealous'];
const NOUNS = ['anchor', 'bay', 'beacon', 'bollard', 'bow', 'buoy', 'cabin', 'canal', 'cargo', 'compass', 'crane', 'current', 'deck', 'dock', 'ferry', 'fjord', 'galley', 'harbor', 'hull', 'inlet', 'jetty', 'keel', 'lagoon', 'lighthouse', 'marina', 'mast', 'mooring', 'oar', 'pier', 'port', 'quay', 'reef', 'rudder', 'sail', 'schooner', 'skiff', 'tide', 'wharf'];

/** A readable random container name like docker's `adjective_noun`. */
export function randomName(taken: (name: string) => boolean): string {
  for (let i = 0; i < 100; i++) {
    const a = ADJECTIVES[randomBytes(1)[0]! % ADJECTIVES.length]!;
    const n = NOUNS[randomBytes(1)[0]! % NOUNS.length]!;
    const name = i < 10 ? `${a}_${n}` : `${a}_${n}${i}`;
    if (!taken(name)) return name;
  }
  return `berth_${randomBytes(6).toString('hex')}`;
}
