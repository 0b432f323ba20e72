/**
 * Hand-made OCI image layouts for registry tests: single-platform images from
 * the busybox root filesystem tarball (or a small generated layer), and
 * multi-platform indexes of them. skopeo reads these with `oci:<dir>:<tag>`.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';

export interface Blob {
  mediaType: string;
  digest: string;
  size: number;
  bytes: Buffer;
}

export const sha256 = (b: Buffer | string): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

export function blob(mediaType: string, bytes: Buffer | string): Blob {
  const b = Buffer.from(bytes);
  return { mediaType, digest: sha256(b), size: b.length, bytes: b };
}

export const descriptor = (b: Blob, extra: Record<string, unknown> = {}) => ({ mediaType: b.mediaType, digest: b.digest, size: b.size, ...extra });

/** A one-file tar archive (ustar), enough for a distinct layer. */
export function tinyTar(name: string, content: string): Buffer {
  const body = Buffer.from(content);
  const h = Buffer.alloc(512);
  h.write(name, 0);
  h.write('0000644\0', 100);
  h.write('0000000\0', 108);
  h.write('0000000\0', 116);
  h.write(body.length.toString(8).padStart(11, '0') + '\0', 124);
  h.write('00000000000\0', 136);
  h.write('        ', 148);
  h.write('0', 156);
  h.write('ustar\0' + '00', 257);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148);
  const pad = Buffer.alloc((512 - (body.length % 512)) % 512);
  return Buffer.concat([h, body, pad, Buffer.alloc(1024)]);
}

export interface Image {
  config: Blob;
  layers: Blob[];
  manifest: Blob;
}

export function image(arch: string, layerTar: Buffer, opts: { docker?: boolean } = {}): Image {
  const gz = gzipSync(layerTar);
  const layer = blob(opts.docker ? 'application/vnd.docker.image.rootfs.diff.tar.gzip' : 'application/vnd.oci.image.layer.v1.tar+gzip', gz);
  const config = blob(
    opts.docker ? 'application/vnd.docker.container.image.v1+json' : 'application/vnd.oci.image.config.v1+json',
    JSON.stringify({ architecture: arch, os: 'linux', config: { Cmd: ['sh'] }, rootfs: { type: 'layers', diff_ids: [sha256(layerTar)] } }),
  );
  const manifestType = opts.docker ? 'application/vnd.docker.distribution.manifest.v2+json' : 'application/vnd.oci.image.manifest.v1+json';
  const manifest = blob(manifestType, JSON.stringify({ schemaVersion: 2, mediaType: manifestType, config: descriptor(config), layers: [descriptor(layer)] }));
  return { config, layers: [layer], manifest };
}

export function index(images: { image: Image; arch: string }[]): Blob {
  return blob(
    'application/vnd.oci.image.index.v1+json',
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: images.map(({ image: im, arch }) => descriptor(im.manifest, { platform: { architecture: arch, os: 'linux' } })),
    }),
  );
}

/** Write an OCI layout whose index.json names `top` (a manifest or an index) as `tag`. */
export function writeLayout(dir: string, blobs: Blob[], top: Blob, tag: string): void {
  mkdirSync(join(dir, 'blobs', 'sha256'), { recursive: true });
  for (const b of blobs) writeFileSync(join(dir, 'blobs', 'sha256', b.digest.slice(7)), b.bytes);
  writeFileSync(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  writeFileSync(join(dir, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: [descriptor(top, { annotations: { 'org.opencontainers.image.ref.name': tag } })] }));
}

export function imageBlobs(im: Image): Blob[] {
  return [im.config, ...im.layers, im.manifest];
}

export function busyboxTar(root: string): Buffer {
  return readFileSync(join(root, '.cache', 'busybox.tar'));
}

/**
 * A two-platform index (busybox for amd64, a one-file arm64 image) written
 * as an OCI layout under `dir` and copied by skopeo to `<registry>/multi/busybox:v1`.
 * Returns the index blob.
 */
export function pushMultiPlatform(root: string, dir: string, registry: string): Blob {
  const host = image('amd64', busyboxTar(root));
  const arm = image('arm64', tinyTar('arm', 'arm64\n'));
  const idx = index([{ image: host, arch: 'amd64' }, { image: arm, arch: 'arm64' }]);
  const src = join(dir, 'layout-multi');
  writeLayout(src, [...imageBlobs(host), ...imageBlobs(arm), idx], idx, 'multi');
  const copy = spawnSync('skopeo', ['copy', '--all', '--dest-tls-verify=false', `oci:${src}:multi`, `docker://${registry}/multi/busybox:v1`], { encoding: 'utf8' });
  if (copy.status !== 0) throw new Error(`skopeo copy failed: ${copy.stderr}`);
  return idx;
}
