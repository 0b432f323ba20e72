/**
 * Mount parsing and resolution without a daemon: `-v` specs, `--mount`
 * values, API Mounts, tmpfs options, and path resolution inside a root.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import {
  isLocalPath, mergeTmpfsOptions, mountPoint, parseBind, parseMountSpec, parseTmpfsOptions, parseVolumesFrom, validMountMode,
} from '../../src/volume/mount-spec.ts';
import { MOUNT_FLAGS, applyMountFlags, parseMountFlag } from '../../src/cli/mount-opts.ts';
import { Flags, parseFlags } from '../../src/cli/flags.ts';
import { resolveInside } from '../../src/volume/safe-path.ts';
import { validateDriverOpts } from '../../src/volume/volume-store.ts';

test('-v specs: binds, named volumes, anonymous volumes and modes', () => {
  assert.deepEqual(parseBind('/host/dir:/data'), { type: 'bind', source: '/host/dir', destination: '/data', readOnly: false, mode: '', propagation: 'rprivate', copyData: false });
  const ro = parseBind('/host/dir/:/data/:ro,rslave');
  assert.equal(ro.source, '/host/dir');
  assert.equal(ro.destination, '/data');
  assert.equal(ro.readOnly, true);
  assert.equal(ro.propagation, 'rslave');
  assert.equal(ro.mode, 'ro,rslave');
  const named = parseBind('myvol:/data:ro');
  assert.equal(named.type, 'volume');
  assert.equal(named.name, 'myvol');
  assert.equal(named.readOnly, true);
  assert.equal(named.copyData, true);
  assert.equal(parseBind('myvol:/data:nocopy').copyData, false);
  const anon = parseBind('/data');
  assert.equal(anon.type, 'volume');
  assert.equal(anon.anonymous, true);
  assert.equal(anon.name, undefined);
  assert.equal(parseBind('/data:ro').readOnly, true);
});

test('-v specs: bad input gets docker\'s errors', () => {
  assert.throws(() => parseBind('rel/path:/data'), /"rel\/path" includes invalid characters for a local volume name.*use absolute path/);
  assert.throws(() => parseBind('/a::/b'), /invalid volume specification: '\/a::\/b'/);
  assert.throws(() => parseBind('/a:/b:c:d'), /invalid volume specification/);
  assert.throws(() => parseBind('/a:/b:bogus'), /invalid mode: bogus/);
  assert.throws(() => parseBind('/a:/b:ro,rw'), /invalid mode: ro,rw/);
  assert.throws(() => parseBind('vol:relative'), /mount path must be absolute/);
  assert.throws(() => parseBind('vol:/x:rshared'), /field BindOptions must not be specified/);
  assert.throws(() => parseBind('/a:/'), /destination can't be '\/'/);
});

test('mount modes', () => {
  for (const ok of ['', 'ro', 'rw', 'z', 'Z', 'ro,Z', 'rw,rshared', 'nocopy', 'ro,nocopy,cached']) assert.ok(validMountMode(ok), ok);
  for (const bad of ['x', 'ro,ro', 'shared,slave', 'nocopy,nocopy', 'ro,']) assert.ok(!validMountMode(bad), bad);
});

test('API Mounts: validation per type', () => {
  const b = parseMountSpec({ Type: 'bind', Source: '/tmp', Target: '/x', ReadOnly: true, BindOptions: { Propagation: 'rslave', NonRecursive: true } });
  assert.deepEqual([b.type, b.source, b.readOnly, b.propagation, b.nonRecursive], ['bind', '/tmp', true, 'rslave', true]);
  assert.throws(() => parseMountSpec({ Type: 'bind', Source: '/no/such/dir/berth-test', Target: '/x' }), /bind source path does not exist: \/no\/such\/dir\/berth-test/);
  assert.equal(parseMountSpec({ Type: 'bind', Source: '/no/such/dir/berth-test', Target: '/x', BindOptions: { CreateMountpoint: true } }).source, '/no/such/dir/berth-test');
  assert.throws(() => parseMountSpec({ Type: 'bind', Source: 'rel', Target: '/x' }), /invalid mount path: 'rel' mount path must be absolute/);
  assert.throws(() => parseMountSpec({ Type: 'bind', Target: '/x' }), /field Source must not be empty/);
  assert.throws(() => parseMountSpec({ Type: 'bind', Source: '/tmp', Target: '/x', VolumeOptions: {} }), /field VolumeOptions must not be specified/);
  const v = parseMountSpec({ Type: 'volume', Source: 'data', Target: '/d', VolumeOptions: { NoCopy: true, Subpath: 'a/b', DriverConfig: { Options: { type: 'tmpfs', device: 'tmpfs' } } } });
  assert.deepEqual([v.name, v.copyData, v.subpath, v.volumeOptions?.options?.type], ['data', false, 'a/b', 'tmpfs']);
  assert.equal(parseMountSpec({ Type: 'volume', Target: '/d' }).anonymous, true);
  assert.throws(() => parseMountSpec({ Type: 'volume', Source: 'vv', Target: '/d', VolumeOptions: { Subpath: '../x' } }), /subpath must be a relative path within the volume/);
  assert.throws(() => parseMountSpec({ Type: 'volume', Source: 'vv', Target: '/d', VolumeOptions: { Subpath: '/etc' } }), /subpath must be a relative path/);
  assert.throws(() => parseMountSpec({ Type: 'volume', Source: 'vv', Target: '/d', BindOptions: {} }), /field BindOptions must not be specified/);
  const t = parseMountSpec({ Type: 'tmpfs', Target: '/t', TmpfsOptions: { SizeBytes: 1024 * 1024, Mode: 0o700 } });
  assert.deepEqual(t.tmpfsOptions, ['size=1024k', 'mode=700']);
  assert.throws(() => parseMountSpec({ Type: 'tmpfs', Source: '/x', Target: '/t' }), /field Source must not be specified/);
  assert.throws(() => parseMountSpec({ Type: 'npipe', Target: '/t' }), /mount type unknown/);
  assert.throws(() => parseMountSpec({ Type: 'volume', Source: 'v', Target: '' }), /field Target must not be empty/);
});

test('--mount flag values as docker\'s CLI parses them', () => {
  assert.deepEqual(parseMountFlag('type=bind,source=/a,target=/b,readonly,bind-propagation=rshared'), { Type: 'bind', Source: '/a', Target: '/b', ReadOnly: true, BindOptions: { Propagation: 'rshared' } });
  assert.deepEqual(parseMountFlag('src=v,dst=/d,volume-nocopy,volume-subpath=x/y,volume-opt=type=tmpfs,volume-opt=device=tmpfs,volume-label=a=b'), {
    Type: 'volume', Source: 'v', Target: '/d',
    VolumeOptions: { NoCopy: true, Subpath: 'x/y', DriverConfig: { Options: { type: 'tmpfs', device: 'tmpfs' } }, Labels: { a: 'b' } },
  });
  assert.deepEqual(parseMountFlag('type=tmpfs,destination=/t,tmpfs-size=64m,tmpfs-mode=1770'), { Type: 'tmpfs', Target: '/t', TmpfsOptions: { SizeBytes: 64 * 1024 * 1024, Mode: 0o1770 } });
  assert.equal(parseMountFlag('"type=bind","src=/a,b",dst=/c').Source, '/a,b');
  assert.equal(parseMountFlag('type=volume,dst=/d,ro=false').ReadOnly, false);
  assert.throws(() => parseMountFlag('type=bind,src=/a'), /target is required/);
  assert.deepEqual(parseMountFlag('type=bind,src=/a,dst=/b,ro,bind-recursive=writable').BindOptions, { ReadOnlyNonRecursive: true });
  assert.deepEqual(parseMountFlag('type=bind,src=/a,dst=/b,bind-recursive=disabled').BindOptions, { NonRecursive: true });
  assert.throws(() => parseMountFlag('type=bind,src=/a,dst=/b,bind-recursive=maybe'), /invalid value for bind-recursive: maybe/);
  assert.throws(() => parseMountFlag('type=bind,src=/a,dst=/b,volume-nocopy'), /cannot mix 'volume-\*' options with mount type 'bind'/);
  assert.throws(() => parseMountFlag('type=volume,dst=/b,bind-propagation=shared'), /cannot mix 'bind-\*' options with mount type 'volume'/);
  assert.throws(() => parseMountFlag('dst=/b,tmpfs-size=1m'), /cannot mix 'tmpfs-\*' options/);
  assert.throws(() => parseMountFlag('type=tmpfs,dst=/b,tmpfs-mode=9'), /invalid value for tmpfs-mode: 9/);
  assert.throws(() => parseMountFlag('dst=/b,bogus=1'), /unexpected key 'bogus' in 'bogus=1'/);
  assert.throws(() => parseMountFlag('dst=/b,src'), /invalid field 'src' must be a key=value pair/);
  assert.throws(() => parseMountFlag('dst=/b,ro=maybe'), /invalid boolean value/);
});

test('--tmpfs options, volumes-from modes, tmpfs option merging', () => {
  assert.deepEqual(parseTmpfsOptions('/run', 'rw,size=64m,mode=1770').tmpfsOptions, ['rw', 'size=64m', 'mode=1770']);
  assert.equal(parseTmpfsOptions('/run', 'ro').readOnly, true);
  assert.throws(() => parseTmpfsOptions('/run', 'bogus'), /invalid tmpfs option \["bogus"\]/);
  assert.throws(() => parseTmpfsOptions('run', ''), /mount path must be absolute/);
  assert.deepEqual(parseVolumesFrom('web:ro'), { container: 'web', mode: 'ro' });
  assert.deepEqual(parseVolumesFrom('web'), { container: 'web', mode: '' });
  assert.throws(() => parseVolumesFrom('web:xx'), /invalid mode: xx/);
  assert.deepEqual(mergeTmpfsOptions(['noexec', 'nosuid', 'nodev'], ['exec', 'size=1m']), ['nosuid', 'nodev', 'exec', 'size=1m']);
  assert.deepEqual(mergeTmpfsOptions(['noexec', 'size=1k'], ['size=2k']), ['noexec', 'size=2k']);
});

test('inspect Mounts entries', () => {
  assert.deepEqual(mountPoint({ ...parseBind('/h:/c:ro'), source: '/h' }), { Type: 'bind', Source: '/h', Destination: '/c', Mode: 'ro', RW: false, Propagation: 'rprivate' });
  assert.deepEqual(mountPoint({ ...parseBind('vv:/c'), source: '/d/vv/_data', mode: 'z' }), { Type: 'volume', Name: 'vv', Source: '/d/vv/_data', Destination: '/c', Driver: 'local', Mode: 'z', RW: true, Propagation: '' });
});

test('local driver options', () => {
  validateDriverOpts({ type: 'tmpfs', device: 'tmpfs', o: 'size=1m' });
  validateDriverOpts({});
  assert.throws(() => validateDriverOpts({ foo: 'bar' }), /invalid option: "foo"/);
  assert.throws(() => validateDriverOpts({ type: 'tmpfs' }), /missing required option: "device"/);
  assert.throws(() => validateDriverOpts({ o: 'bind', device: '/x' }), /missing required option: "type"/);
});

test('lexical subpath check', () => {
  for (const ok of ['a', 'a/b', 'a/../b', './a']) assert.ok(isLocalPath(ok), ok);
  for (const bad of ['', '/a', '..', 'a/../..', '../a']) assert.ok(!isLocalPath(bad), bad);
});

test('resolving inside a root never leaves it', async () => {
  const root = mkdtempSync(join(tmpdir(), 'berth-unit-resolve-'));
  try {
    mkdirSync(join(root, 'a/b'), { recursive: true });
    writeFileSync(join(root, 'a/b/f'), 'x');
    symlinkSync('a/b', join(root, 'rel'));
    symlinkSync('/etc', join(root, 'abs'));
    symlinkSync('../../..', join(root, 'a/up'));
    symlinkSync('loop2', join(root, 'loop1'));
    symlinkSync('loop1', join(root, 'loop2'));
    assert.deepEqual(await resolveInside(root, 'rel/f', 'beneath'), { path: join(root, 'a/b/f'), exists: true });
    assert.deepEqual(await resolveInside(root, 'a/b/../b/f', 'beneath'), { path: join(root, 'a/b/f'), exists: true });
    assert.equal((await resolveInside(root, 'a/missing/x', 'beneath')).exists, false);
    await assert.rejects(resolveInside(root, 'abs', 'beneath'), /escapes its root through the symbolic link "abs"/);
    await assert.rejects(resolveInside(root, 'a/up', 'beneath'), /escapes its root/);
    await assert.rejects(resolveInside(root, '../x', 'beneath'), /escapes its root/);
    await assert.rejects(resolveInside(root, 'loop1', 'beneath'), /too many levels of symbolic links/);
    // In scope mode an absolute link is taken relative to the root, like a chroot.
    assert.deepEqual(await resolveInside(root, 'abs', 'scope'), { path: join(root, 'etc'), exists: false });
    assert.deepEqual(await resolveInside(root, 'a/up/a/b', 'scope'), { path: join(root, 'a/b'), exists: true });
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('storage flags become the create body as docker\'s CLI builds it', () => {
  const f = new Flags(parseFlags(['-v', 'named:/n', '-v', './rel:/r:ro', '-v', '/anon', '--mount', 'type=tmpfs,dst=/t', '--tmpfs', '/run:size=1m', '--tmpfs', '/x', '--volumes-from', 'web:ro'], MOUNT_FLAGS).flags);
  const config: Record<string, unknown> = {};
  const hc: Record<string, unknown> = {};
  applyMountFlags(f, config, hc);
  assert.deepEqual(hc.Binds, ['named:/n', `${process.cwd()}/rel:/r:ro`]);
  assert.deepEqual(config.Volumes, { '/anon': {} });
  assert.deepEqual(hc.Mounts, [{ Type: 'tmpfs', Target: '/t' }]);
  assert.deepEqual(hc.Tmpfs, { '/run': 'size=1m', '/x': '' });
  assert.deepEqual(hc.VolumesFrom, ['web:ro']);
  const none: Record<string, unknown> = {};
  applyMountFlags(new Flags(parseFlags([], MOUNT_FLAGS).flags), none, none);
  assert.deepEqual(none, {});
  assert.throws(() => applyMountFlags(new Flags(parseFlags(['--mount', 'type=bind'], MOUNT_FLAGS).flags), {}, {}), /invalid argument "type=bind" for "--mount" flag: target is required/);
});
