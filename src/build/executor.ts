/**
 * Executing a parsed Dockerfile: stages in dependency order (independent
 * ones at the same time, output kept in Dockerfile order), each instruction
 * a step that is looked up in the cache before it runs, RUN in a real
 * container, COPY/ADD into a staging layer, the rest edits to the config.
 * Output is docker's classic builder text ("Step 2/5 : RUN …").
 */
import { randomBytes, createHash } from 'node:crypto';
import { mkdir, readdir, rmdir, rm, writeFile, lstat } from 'node:fs/promises';
import { join, posix } from 'node:path';
import type { Engine } from '../engine/engine.ts';
import { childConfig, snapshotLayer, storeImage, topChain } from '../engine/commit.ts';
import { chainIds } from '../image/layer-store.ts';
import type { ImageConfig, ImageRunConfig } from '../image/types.ts';
import { familiarName, parseReference } from '../image/reference.ts';
import { resolveUser } from '../engine/rootfs.ts';
import type { OciMount } from '../runtime/oci-spec.ts';
import { BerthError, errorMessage } from '../util/errors.ts';
import { removeTree } from '../util/fsutil.ts';
import { Expander } from './expand.ts';
import { DockerfileError, parseDockerfile, parseKeyValues, parseStages, splitRawWords } from './parser.ts';
import type { Instruction, Stage, StagedDockerfile } from './parser.ts';
import { DockerIgnore } from './dockerignore.ts';
import { DiskTree, copyInto, findSources, hashSources, parseChmod, resolveDest } from './copy.ts';
import type { Source } from './copy.ts';
import { BuildContext } from './context.ts';
import { mountLayers, statInLayers } from './rootview.ts';
import type { RootView } from './rootview.ts';
import type { BuildCache } from './cache.ts';
import { stepKey } from './cache.ts';
import type { BuildNetwork, BuildRunner } from './run-step.ts';
import {
  DEFAULT_PATH, envToMap, exposePorts, goList, goQuoteList, healthcheck, healthHistory, nopHistory, nopHistory1, setEnv, shellOf, checkSignal,
} from './instructions.ts';

export interface BuildRequest {
  /** The context as received: hashed from memory, written to disk only when a step needs its files. */
  context: BuildContext;
  dockerfile: string;
  /** The Dockerfile already parsed (the service checks it before the build starts). */
  parsed: StagedDockerfile;
  tags: string[];
  buildArgs: Record<string, string | null>;
  labels: Record<string, string>;
  target?: string;
  noCache: boolean;
  network: BuildNetwork;
  secrets: Map<string, Buffer>;
  ignore?: DockerIgnore;
  /** Aborted when the client goes away: the build stops before its next step. */
  signal?: AbortSignal;
  /** --pull: fetch every base image from its registry, even one stored here. */
  pull?: boolean;
}

export interface BuildSink {
  /** Text for the build's stream, in order. */
  write(text: string): void;
}

/** A failure reported in the stream: the message docker would give. */
export class BuildFailure extends BerthError {
  constructor(message: string) {
    super('InvalidParameter', message);
  }
}

/** Args every build may use without an ARG instruction. */
const PREDEFINED_ARGS = new Set(['HTTP_PROXY', 'http_proxy', 'HTTPS_PROXY', 'https_proxy', 'FTP_PROXY', 'ftp_proxy', 'NO_PROXY', 'no_proxy', 'ALL_PROXY', 'all_proxy']);

interface StageResult {
  config: ImageConfig;
  key: string;
}

interface State {
  config: ImageConfig;
  key: string;
  /** Args declared in this stage, with their values (undefined: declared without one). */
  args: Map<string, string | undefined>;
  cmdSet: boolean;
}

/** Stage output held back until the stages before it have printed theirs. */
class OrderedOutput {
  private readonly sink: BuildSink;
  private readonly order: number[];
  private head = 0;
  private readonly pending = new Map<number, string[]>();
  private readonly done = new Set<number>();

  constructor(sink: BuildSink, order: number[]) {
    this.sink = sink;
    this.order = order;
  }

  write(stage: number, text: string): void {
    if (this.order[this.head] === stage) this.sink.write(text);
    else {
      const p = this.pending.get(stage) ?? [];
      p.push(text);
      this.pending.set(stage, p);
    }
  }

  finish(stage: number): void {
    this.done.add(stage);
    while (this.head < this.order.length && this.done.has(this.order[this.head]!)) {
      this.head++;
      const next = this.order[this.head];
      if (next === undefined) break;
      for (const t of this.pending.get(next) ?? []) this.sink.write(t);
      this.pending.delete(next);
    }
  }
}

function shortHex(id: string): string {
  return id.replace(/^sha256:/, '').slice(0, 12);
}

function configId(c: ImageConfig): string {
  return createHash('sha256').update(JSON.stringify(c)).digest('hex');
}

export class Executor {
  private readonly engine: Engine;
  private readonly cache: BuildCache;
  private readonly runner: BuildRunner;
  private readonly req: BuildRequest;
  private readonly df: StagedDockerfile;
  private readonly esc: string;
  private readonly sink: BuildSink;
  private out!: OrderedOutput;
  private readonly usedArgs = new Set<string>();
  private readonly globalArgs = new Map<string, string | undefined>();
  private readonly results = new Map<number, Promise<StageResult>>();
  private stepNo = new Map<Instruction, number>();
  private total = 0;
  private readonly tmpRoot: string;
  private readonly emptyDir: string;

  constructor(engine: Engine, cache: BuildCache, runner: BuildRunner, req: BuildRequest, sink: BuildSink, emptyDir: string) {
    this.engine = engine;
    this.cache = cache;
    this.runner = runner;
    this.req = req;
    this.sink = sink;
    this.emptyDir = emptyDir;
    this.tmpRoot = join(engine.cfg.dataRoot, 'build', 'tmp');
    this.df = req.parsed;
    this.esc = this.df.directives.escape;
  }

  /** Parse errors surface here, before anything streams. */
  static parse(text: string): StagedDockerfile {
    return parseStages(text);
  }

  private globalExpander(): Expander {
    return new Expander((k) => {
      if (this.globalArgs.has(k)) return this.globalArgs.get(k);
      return undefined;
    }, this.esc);
  }

  private stageIndex(ref: string, before: number): number | undefined {
    const lower = ref.toLowerCase();
    for (const s of this.df.stages) {
      if (s.index >= before) break;
      if (s.name === lower) return s.index;
    }
    if (/^\d+$/.test(ref) && Number(ref) < before) return Number(ref);
    return undefined;
  }

  /** The stages a stage needs: its FROM, COPY --from and RUN --mount from=. */
  private deps(stage: Stage): number[] {
    const out = new Set<number>();
    const fromRef = this.fromName(stage);
    const fi = this.stageIndex(fromRef, stage.index);
    if (fi !== undefined) out.add(fi);
    for (const ins of stage.instructions) {
      for (const f of ins.flags) {
        if (ins.cmd === 'COPY' && f.name === 'from' && f.value) {
          const i = this.stageIndex(this.globalExpander().word(f.value), stage.index);
          if (i !== undefined) out.add(i);
        }
        if (ins.cmd === 'RUN' && f.name === 'mount' && f.value) {
          const from = /(?:^|,)from=([^,]+)/.exec(f.value)?.[1];
          if (from) {
            const i = this.stageIndex(from, stage.index);
            if (i !== undefined) out.add(i);
          }
        }
      }
    }
    return [...out];
  }

  private fromName(stage: Stage): string {
    const w = splitRawWords(stage.from.rest, this.esc);
    return this.globalExpander().word(w[0]!);
  }

  async run(): Promise<string> {
    const req = this.req;
    // Global args: defaults, overridden by --build-arg.
    for (const a of this.df.globalArgs) {
      for (const [name, def] of this.argPairs(a)) {
        const v = name in req.buildArgs ? req.buildArgs[name] ?? undefined : def !== undefined ? this.globalExpander().word(def) : undefined;
        if (name in req.buildArgs) this.usedArgs.add(name);
        this.globalArgs.set(name, v);
      }
    }
    let target = this.df.stages[this.df.stages.length - 1]!;
    if (req.target) {
      const t = this.df.stages.find((s) => s.name === req.target!.toLowerCase());
      if (!t) throw new BuildFailure(`failed to reach build target ${req.target} in Dockerfile`);
      target = t;
    }
    // Only the stages the target needs run.
    const needed = new Set<number>();
    const visit = (i: number): void => {
      if (needed.has(i)) return;
      needed.add(i);
      for (const d of this.deps(this.df.stages[i]!)) visit(d);
    };
    visit(target.index);
    const order = [...needed].sort((a, b) => a - b);
    let n = 0;
    for (const a of this.df.globalArgs) this.stepNo.set(a, ++n);
    for (const i of order) {
      const s = this.df.stages[i]!;
      this.stepNo.set(s.from, ++n);
      for (const ins of s.instructions) this.stepNo.set(ins, ++n);
    }
    const labelStep = Object.keys(req.labels).length ? this.labelInstruction() : undefined;
    if (labelStep) this.stepNo.set(labelStep, ++n);
    this.total = n;
    for (const a of this.df.globalArgs) this.sink.write(`Step ${this.stepNo.get(a)}/${n} : ${a.original}\n`);
    this.out = new OrderedOutput(this.sink, order);
    await mkdir(this.tmpRoot, { recursive: true, mode: 0o700 });
    for (const i of order) this.results.set(i, this.stage(this.df.stages[i]!, i === target.index ? labelStep : undefined));
    // Every stage settles before the build ends, so none is left running.
    const settled = await Promise.allSettled(order.map((i) => this.results.get(i)!));
    const failed = settled.find((s) => s.status === 'rejected');
    if (failed) throw (failed as PromiseRejectedResult).reason;
    const final = await this.results.get(target.index)!;
    const unused = Object.keys(req.buildArgs).filter((k) => !this.usedArgs.has(k) && !PREDEFINED_ARGS.has(k)).sort();
    if (unused.length) this.sink.write(`[Warning] One or more build-args [${unused.join(' ')}] were not consumed\n`);
    const rec = await storeImage(this.engine.imageStore, final.config);
    return rec.id;
  }

  private labelInstruction(): Instruction {
    const text = 'LABEL ' + Object.entries(this.req.labels).map(([k, v]) => `${JSON.stringify(k)}=${JSON.stringify(v)}`).join(' ');
    return parseDockerfile(text).instructions[0]!;
  }

  private argPairs(ins: Instruction): Array<[string, string | undefined]> {
    const out: Array<[string, string | undefined]> = [];
    for (const w of splitRawWords(ins.rest, this.esc)) {
      const i = w.indexOf('=');
      if (i === 0) throw new DockerfileError(ins.line, 'ARG names can not be blank');
      out.push(i < 0 ? [w, undefined] : [w.slice(0, i), w.slice(i + 1)]);
    }
    return out;
  }

  private write(stage: number, text: string): void {
    this.out.write(stage, text);
  }

  private stepHeader(stage: number, ins: Instruction): void {
    const no = this.stepNo.get(ins);
    this.write(stage, no ? `Step ${no}/${this.total} : ${ins.original}\n` : `${ins.original}\n`);
  }

  private async stage(stage: Stage, extra: Instruction | undefined): Promise<StageResult> {
    try {
      const deps = this.deps(stage);
      await Promise.all(deps.map((d) => this.results.get(d)));
      this.stepHeader(stage.index, stage.from);
      const st = await this.from(stage);
      this.write(stage.index, ` ---> ${shortHex(configId(st.config))}\n`);
      // ONBUILD triggers of the base run first, and are not inherited.
      const triggers = st.config.config?.OnBuild ?? [];
      if (triggers.length) {
        this.write(stage.index, `# Executing ${triggers.length} build trigger${triggers.length > 1 ? 's' : ''}\n`);
        st.config = { ...st.config, config: { ...st.config.config, OnBuild: null } };
        for (const t of triggers) {
          const parsed = parseDockerfile(t).instructions[0];
          if (!parsed) continue;
          await this.step(stage, st, parsed, true);
        }
      }
      for (const ins of stage.instructions) await this.step(stage, st, ins, false);
      if (extra) await this.step(stage, st, extra, false);
      return { config: st.config, key: st.key };
    } finally {
      this.out.finish(stage.index);
    }
  }

  private async from(stage: Stage): Promise<State> {
    const name = this.fromName(stage);
    if (name === '') throw new BuildFailure(`base name (${splitRawWords(stage.from.rest, this.esc)[0]}) should not be blank`);
    const si = this.stageIndex(name, stage.index);
    if (si !== undefined) {
      const r = await this.results.get(si)!;
      return { config: structuredClone(r.config), key: r.key, args: new Map(), cmdSet: false };
    }
    if (name.toLowerCase() === 'scratch') {
      const config: ImageConfig = { architecture: 'amd64', os: 'linux', config: {}, rootfs: { type: 'layers', diff_ids: [] }, history: [] };
      config.architecture = process.arch === 'x64' ? 'amd64' : process.arch;
      return { config, key: 'scratch', args: new Map(), cmdSet: false };
    }
    let img = this.req.pull ? undefined : this.engine.imageStore.resolve(name);
    if (!img) {
      // A base image not stored here (or --pull) comes from its registry, as docker's FROM does.
      try {
        parseReference(name);
      } catch {
        throw new BuildFailure(`invalid reference format: ${name}`);
      }
      try {
        await this.engine.distribution.pull({ fromImage: name }, (m) => {
          if (m.status && !m.progressDetail) this.write(stage.index, `${m.id ? `${m.id}: ` : ''}${m.status}\n`);
        });
      } catch (err) {
        throw new BuildFailure(errorMessage(err));
      }
      img = this.engine.imageStore.resolve(name);
      if (!img) throw new BuildFailure(`pull access denied for ${familiarName(parseReference(name))}, repository does not exist or may require 'docker login'`);
    }
    const config = structuredClone(img.config);
    delete config.container_config;
    return { config, key: `image:${img.record.id}`, args: new Map(), cmdSet: false };
  }

  /** Build args and env as a RUN or a substitution sees them (ENV wins over ARG). */
  private vars(st: State): Map<string, string> {
    const m = new Map<string, string>();
    for (const [k, v] of st.args) if (v !== undefined) m.set(k, v);
    for (const [k, v] of envToMap(st.config.config?.Env)) m.set(k, v);
    return m;
  }

  private expander(st: State): Expander {
    const vars = this.vars(st);
    return new Expander((k) => vars.get(k), this.esc);
  }

  private layerDirs(config: ImageConfig): string[] {
    return chainIds(config.rootfs.diff_ids).map((c) => this.engine.layers.diffDir(c)).reverse();
  }

  /** Apply a config-only change: a history entry, no layer. */
  private configStep(st: State, run: ImageRunConfig, comment: string, single = false): void {
    // The history's shell is the one in effect after the step (SHELL shows its own).
    st.config = childConfig(st.config, { run, createdBy: single ? nopHistory1(run, comment) : nopHistory(run, comment), diffId: null });
  }

  private async step(stage: Stage, st: State, ins: Instruction, trigger: boolean): Promise<void> {
    const si = stage.index;
    if (this.req.signal?.aborted) throw new BuildFailure('build cancelled: the client went away');
    if (!trigger) this.stepHeader(si, ins);
    else this.write(si, `Step ${ins.original}\n`);
    try {
      await this.dispatch(stage, st, ins);
    } catch (err) {
      if (err instanceof BuildFailure || err instanceof DockerfileError) throw err;
      if (err instanceof BerthError) throw new BuildFailure(err.message);
      throw err;
    }
    this.write(si, ` ---> ${shortHex(configId(st.config))}\n`);
  }

  /** Cache lookup around a step: `work` produces the new config on a miss. */
  private async cached(si: number, st: State, parts: unknown[], work: () => Promise<ImageConfig>): Promise<void> {
    const key = stepKey(st.key, parts);
    if (!this.req.noCache) {
      const hit = await this.cache.get(key);
      if (hit) {
        this.write(si, ' ---> Using cache\n');
        st.config = hit;
        st.key = key;
        return;
      }
    }
    st.config = await work();
    st.key = key;
    await this.cache.put(key, st.config);
  }

  private async dispatch(stage: Stage, st: State, ins: Instruction): Promise<void> {
    const si = stage.index;
    const run: ImageRunConfig = structuredClone(st.config.config ?? {});
    const x = this.expander(st);
    const flags = new Map(ins.flags.map((f) => [f.name, f.value ?? 'true']));
    const simple = async (comment: string, change: () => void, single = false): Promise<void> => {
      change();
      await this.cached(si, st, [ins.cmd, comment, run], async () => {
        this.configStep(st, run, comment, single);
        return st.config;
      });
    };
    switch (ins.cmd) {
      case 'ENV': {
        const pairs = parseKeyValues('ENV', ins.rest, this.esc, ins.line).map(([k, v]) => [x.word(k), x.word(v)] as const);
        let env = run.Env ?? [];
        for (const [k, v] of pairs) {
          if (k === '') throw new DockerfileError(ins.line, 'ENV names can not be blank');
          env = setEnv(env, k, v);
        }
        return simple(`ENV ${pairs.map(([k, v]) => `${k}=${v}`).join(' ')}`, () => { run.Env = env; });
      }
      case 'LABEL': {
        const pairs = parseKeyValues('LABEL', ins.rest, this.esc, ins.line).map(([k, v]) => [x.word(k), x.word(v)] as const);
        return simple(`LABEL ${pairs.map(([k, v]) => `${k}=${v}`).join(' ')}`, () => {
          run.Labels = { ...(run.Labels ?? {}) };
          for (const [k, v] of pairs) {
            if (k === '') throw new DockerfileError(ins.line, 'LABEL names can not be blank');
            run.Labels[k] = v;
          }
        });
      }
      case 'MAINTAINER': {
        const who = x.word(ins.rest);
        const key = stepKey(st.key, ['MAINTAINER', who]);
        const hit = this.req.noCache ? undefined : await this.cache.get(key);
        if (hit) {
          this.write(si, ' ---> Using cache\n');
          st.config = hit;
        } else {
          st.config = childConfig(st.config, { run, createdBy: nopHistory(run, `MAINTAINER ${who}`), diffId: null, author: who });
          await this.cache.put(key, st.config);
        }
        st.key = key;
        return;
      }
      case 'ARG': {
        const shown: string[] = [];
        for (const [name, def] of this.argPairs(ins)) {
          let v: string | undefined;
          const defVal = def !== undefined ? x.word(def) : undefined;
          if (name in this.req.buildArgs) {
            v = this.req.buildArgs[name] ?? defVal;
            this.usedArgs.add(name);
          } else if (defVal !== undefined) v = defVal;
          else if (this.globalArgs.has(name)) v = this.globalArgs.get(name);
          st.args.set(name, v);
          shown.push(defVal !== undefined ? `${name}=${defVal}` : name);
        }
        // The values in effect are part of the key: a different --build-arg is another build.
        const values = [...st.args].map(([k, v]) => `${k}=${v ?? ''}`);
        return simple(`ARG ${shown.join(' ')}`, () => undefined).then(async () => {
          st.key = stepKey(st.key, ['ARGVALUES', values]);
        });
      }
      case 'WORKDIR': {
        const w = x.word(ins.rest);
        const joined = w.startsWith('/') ? w : posix.join('/', run.WorkingDir || '/', w);
        run.WorkingDir = posix.normalize(joined);
        return simple(`WORKDIR ${run.WorkingDir}`, () => undefined, true);
      }
      case 'USER':
        run.User = x.word(ins.rest);
        return simple(`USER ${run.User}`, () => undefined);
      case 'EXPOSE': {
        const { keys, text } = exposePorts(x.words(ins.rest));
        return simple(`EXPOSE ${text}`, () => {
          run.ExposedPorts = { ...(run.ExposedPorts ?? {}) };
          for (const k of keys) run.ExposedPorts[k] = {};
        });
      }
      case 'VOLUME': {
        const vols = (ins.json ?? x.words(ins.rest)).map((v) => (ins.json ? v : v).trim());
        for (const v of vols) if (v === '') throw new BuildFailure('VOLUME specified can not be an empty string');
        return simple(`VOLUME ${goList(vols)}`, () => {
          run.Volumes = { ...(run.Volumes ?? {}) };
          for (const v of vols) run.Volumes[v] = {};
        });
      }
      case 'STOPSIGNAL': {
        const sig = x.word(ins.rest);
        checkSignal(sig);
        run.StopSignal = sig;
        return simple(`STOPSIGNAL ${sig}`, () => undefined);
      }
      case 'HEALTHCHECK': {
        const h = healthcheck(flags, ins.json, ins.rest);
        run.Healthcheck = h;
        return simple(`HEALTHCHECK ${healthHistory(h)}`, () => undefined);
      }
      case 'SHELL':
        run.Shell = ins.json!;
        return simple(`SHELL ${goList(ins.json!)}`, () => undefined);
      case 'ONBUILD':
        run.OnBuild = [...(run.OnBuild ?? []), ins.rest];
        return simple(`ONBUILD ${ins.rest}`, () => undefined);
      case 'CMD': {
        const cmd = ins.json ?? (ins.rest === '' ? [] : [...shellOf(run), ins.rest]);
        run.Cmd = cmd;
        st.cmdSet = true;
        return simple(`CMD ${goQuoteList(cmd)}`, () => undefined);
      }
      case 'ENTRYPOINT': {
        const ep = ins.json ?? (ins.rest === '' ? [] : [...shellOf(run), ins.rest]);
        run.Entrypoint = ep;
        // A new entrypoint drops a command inherited from the base.
        if (!st.cmdSet) run.Cmd = null;
        return simple(`ENTRYPOINT ${goQuoteList(ep)}`, () => undefined);
      }
      case 'RUN':
        return this.runStep(stage, st, ins, run);
      case 'COPY':
      case 'ADD':
        return this.copyStep(stage, st, ins, run, x, flags);
      default:
        throw new DockerfileError(ins.line, `unknown instruction: ${ins.cmd}`);
    }
  }

  // ------------------------------------------------------------------ RUN

  private runArgs(ins: Instruction, run: ImageRunConfig): string[] {
    if (ins.json) return ins.json;
    const shell = shellOf(run);
    const only = ins.heredocs.length === 1 ? /^<<-?(["']?)([^"'\s]+)\1$/.exec(ins.rest.trim()) : null;
    if (only && only[2] === ins.heredocs[0]!.name) {
      // `RUN <<EOF` alone: the heredoc is the script.
      const body = ins.heredocs[0]!.content;
      // A script with its own interpreter runs as a file, as its #! line says.
      if (body.startsWith('#!')) return ['/bin/sh', '-c', `f=$(mktemp) && cat > "$f" <<'BERTH_HEREDOC_END'\n${body}BERTH_HEREDOC_END\nchmod +x "$f" && "$f"; r=$?; rm -f "$f"; exit $r`];
      return [...shell, body];
    }
    if (ins.heredocs.length) {
      // The shell reads the heredocs itself, as it would from a script.
      let script = ins.rest;
      for (const h of ins.heredocs) script += `\n${h.content}${h.name}`;
      return [...shell, script];
    }
    return [...shell, ins.rest];
  }

  private async runStep(stage: Stage, st: State, ins: Instruction, run: ImageRunConfig): Promise<void> {
    const si = stage.index;
    const args = this.runArgs(ins, run);
    // Build args visible to the command: those declared here that ENV does not shadow.
    const env = envToMap(run.Env);
    const argEnv: string[] = [];
    for (const [k, v] of [...st.args].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) if (v !== undefined && !env.has(k)) argEnv.push(`${k}=${v}`);
    for (const k of PREDEFINED_ARGS) if (k in this.req.buildArgs && this.req.buildArgs[k] != null && !st.args.has(k)) {
      argEnv.push(`${k}=${this.req.buildArgs[k]}`);
      this.usedArgs.add(k);
    }
    const createdBy = (argEnv.length ? `|${argEnv.length} ${argEnv.join(' ')} ` : '') + args.join(' ');
    const flagNet = ins.flags.find((f) => f.name === 'network')?.value;
    const network = (flagNet ?? this.req.network) as BuildNetwork;
    if (!['default', 'none', 'host'].includes(network)) throw new BuildFailure(`invalid network mode "${network}": must be default, none or host`);
    const security = ins.flags.find((f) => f.name === 'security')?.value;
    if (security && security !== 'sandbox') throw new BuildFailure(`security=${security} is not allowed without the security.insecure entitlement`);
    const mounts = ins.flags.filter((f) => f.name === 'mount').map((f) => this.parseMount(f.value ?? '', st, ins));
    const mountKey = mounts.map((m) => ({ type: m.type, target: m.target, from: m.from, source: m.source, id: m.id }));
    const fromHashes: string[] = [];
    for (const m of mounts) if (m.type === 'bind' && m.fromStage !== undefined) fromHashes.push((await this.results.get(m.fromStage)!).key);
    await this.cached(si, st, ['RUN', createdBy, mountKey, fromHashes, network], async () => {
      const id = randomBytes(32).toString('hex');
      this.write(si, ` ---> Running in ${id.slice(0, 12)}\n`);
      const lowers = this.layerDirs(st.config);
      const views: RootView[] = [];
      let release: (() => Promise<void>) | undefined;
      try {
        const oci = await this.prepareMounts(mounts, st, id, views);
        const runEnv = [...(run.Env ?? [])];
        if (!runEnv.some((e) => e.startsWith('PATH='))) runEnv.unshift(DEFAULT_PATH);
        const res = await this.runner.run({
          id,
          layerDirsTopFirst: lowers,
          args,
          env: [...runEnv, ...argEnv],
          cwd: run.WorkingDir || '/',
          user: run.User || '',
          network,
          mounts: oci,
          onOutput: (_s, d) => this.write(si, d.toString()),
        });
        release = res.release;
        if (res.exitCode !== 0) throw new BuildFailure(`The command '${args.join(' ')}' returned a non-zero code: ${res.exitCode}`);
        await this.dropMountpoints(res.upper, lowers, ['/proc', '/sys', '/dev', '/etc/hosts', '/etc/hostname', '/etc/resolv.conf', ...oci.map((m) => m.destination)]);
        const snap = await snapshotLayer(this.engine.layers, res.upper, topChain(st.config), { move: true });
        return childConfig(st.config, { run, createdBy, diffId: snap.diffId });
      } finally {
        await release?.();
        for (const v of views) await v.release();
        await rm(join(this.tmpRoot, id), { recursive: true, force: true });
        this.write(si, `Removing intermediate container ${id.slice(0, 12)}\n`);
      }
    });
  }

  /**
   * Mount points the runtime had to create in the container (a secret's
   * file, a cache's directory) are not part of what the step made.
   */
  private async dropMountpoints(upper: string, lowers: string[], targets: string[]): Promise<void> {
    for (const t of [...new Set(targets)].sort((a, b) => b.length - a.length)) {
      let p = posix.normalize(t);
      if (await statInLayers(lowers, p)) continue;
      const full = join(upper, p);
      try {
        const s = await lstat(full);
        if (s.isDirectory()) {
          if ((await readdir(full)).length === 0) await rmdir(full);
        } else if (s.size === 0) await rm(full);
      } catch {
        continue;
      }
      // Parents the runtime made for it, now empty.
      for (p = posix.dirname(p); p !== '/'; p = posix.dirname(p)) {
        if (await statInLayers(lowers, p)) break;
        try {
          if ((await readdir(join(upper, p))).length !== 0) break;
          await rmdir(join(upper, p));
        } catch {
          break;
        }
      }
    }
  }

  private parseMount(spec: string, st: State, ins: Instruction): ParsedMount {
    const m: ParsedMount = { type: 'bind', target: '', readonly: undefined, required: false };
    for (const part of spec.split(',')) {
      if (part === '') continue;
      const i = part.indexOf('=');
      const k = (i < 0 ? part : part.slice(0, i)).toLowerCase();
      const v = i < 0 ? 'true' : part.slice(i + 1);
      switch (k) {
        case 'type': m.type = v as ParsedMount['type']; break;
        case 'target': case 'dst': case 'destination': m.target = v; break;
        case 'source': case 'src': m.source = v; break;
        case 'from': m.from = v; break;
        case 'id': m.id = v; break;
        case 'ro': case 'readonly': m.readonly = v !== 'false'; break;
        case 'rw': case 'readwrite': m.readonly = v === 'false'; break;
        case 'required': m.required = v !== 'false'; break;
        case 'mode': m.mode = parseInt(v, 8); break;
        case 'uid': m.uid = Number(v); break;
        case 'gid': m.gid = Number(v); break;
        case 'size': m.size = v; break;
        case 'sharing': case 'env': break;
        default: throw new DockerfileError(ins.line, `unexpected key '${k}' in '${part}'`);
      }
    }
    if (!['bind', 'cache', 'tmpfs', 'secret'].includes(m.type)) throw new DockerfileError(ins.line, `unsupported mount type "${m.type}"`);
    if (m.type === 'secret') {
      if (!m.id) m.id = m.target ? posix.basename(m.target) : '';
      if (!m.id) throw new DockerfileError(ins.line, 'secret mount needs an id or a target');
      if (!m.target) m.target = `/run/secrets/${m.id}`;
    }
    if (!m.target) throw new DockerfileError(ins.line, 'mount target is required');
    if (!m.target.startsWith('/')) m.target = posix.join(st.config.config?.WorkingDir || '/', m.target);
    if (m.from) {
      const idx = this.stageIndex(this.expander(st).word(m.from), Number.MAX_SAFE_INTEGER);
      if (idx !== undefined) m.fromStage = idx;
    }
    return m;
  }

  private async prepareMounts(mounts: ParsedMount[], st: State, id: string, views: RootView[]): Promise<OciMount[]> {
    const out: OciMount[] = [];
    for (const m of mounts) {
      switch (m.type) {
        case 'cache': {
          const dir = await this.cache.mountDir(m.id ?? m.target);
          const s = await lstat(dir);
          if (s.nlink <= 2 && (await readdir(dir)).length === 0) {
            const { chmod, chown } = await import('node:fs/promises');
            await chmod(dir, m.mode ?? 0o755);
            await chown(dir, m.uid ?? 0, m.gid ?? 0);
          }
          out.push({ destination: m.target, type: 'bind', source: dir, options: ['rbind', 'rw'] });
          break;
        }
        case 'tmpfs':
          out.push({ destination: m.target, type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', ...(m.size ? [`size=${m.size}`] : [])] });
          break;
        case 'secret': {
          const data = this.req.secrets.get(m.id!);
          if (!data) {
            if (m.required) throw new BuildFailure(`secret ${m.id} not found`);
            break;
          }
          const dir = join(this.tmpRoot, id);
          await mkdir(dir, { recursive: true, mode: 0o700 });
          const file = join(dir, `secret-${createHash('sha256').update(m.id!).digest('hex').slice(0, 16)}`);
          await writeFile(file, data, { mode: m.mode ?? 0o400 });
          if (m.uid !== undefined || m.gid !== undefined) {
            const { chown } = await import('node:fs/promises');
            await chown(file, m.uid ?? 0, m.gid ?? 0);
          }
          out.push({ destination: m.target, type: 'bind', source: file, options: ['rbind', 'ro'] });
          break;
        }
        case 'bind': {
          let root: string;
          if (m.from) {
            let cfg: ImageConfig;
            if (m.fromStage !== undefined) cfg = (await this.results.get(m.fromStage)!).config;
            else {
              const img = this.engine.imageStore.resolve(this.expander(st).word(m.from));
              if (!img) throw new BuildFailure(`pull access denied for ${m.from}, repository does not exist or may require 'docker login'`);
              cfg = img.config;
            }
            const v = await mountLayers(this.layerDirs(cfg), this.tmpRoot, this.emptyDir);
            views.push(v);
            root = v.path;
          } else root = await this.req.context.directory();
          const src = join(root, posix.normalize(posix.join('/', m.source ?? '/')));
          try {
            await lstat(src);
          } catch {
            throw new BuildFailure(`failed to compute cache key: "${m.source ?? '/'}" not found`);
          }
          const rw = m.readonly === false;
          let source = src;
          if (rw) {
            // Writes to a read-write bind are the step's own: they go to a copy.
            const copy = join(this.tmpRoot, id, 'bind-' + out.length);
            await mkdir(join(this.tmpRoot, id), { recursive: true });
            const { cp } = await import('node:fs/promises');
            await cp(src, copy, { recursive: true, preserveTimestamps: true, verbatimSymlinks: true });
            source = copy;
          }
          out.push({ destination: m.target, type: 'bind', source, options: ['rbind', rw ? 'rw' : 'ro'] });
          break;
        }
      }
    }
    return out;
  }

  // ------------------------------------------------------------ COPY / ADD

  private async copyStep(stage: Stage, st: State, ins: Instruction, run: ImageRunConfig, x: Expander, flags: Map<string, string>): Promise<void> {
    const si = stage.index;
    const cmd = ins.cmd;
    let words: string[];
    if (ins.json) words = ins.json.map((w) => x.word(w));
    else words = x.words(ins.rest);
    if (words.length < 2 && ins.heredocs.length === 0) throw new BuildFailure(`${cmd} requires at least two arguments, but only one was provided. Destination could not be determined.`);
    const destRaw = words[words.length - 1]!;
    const srcWords = words.slice(0, -1);
    const heredocNames = new Set(ins.heredocs.map((h) => h.name));
    const fromFlag = flags.get('from');
    if (fromFlag && cmd === 'ADD') throw new BuildFailure('ADD does not support --from');
    const { path: dest, isDir } = resolveDest(destRaw, run.WorkingDir || '/');
    const chmod = flags.has('chmod') ? parseChmod(flags.get('chmod')!) : undefined;
    const excludes = ins.flags.filter((f) => f.name === 'exclude' && f.value).map((f) => x.word(f.value!));
    const exclude = excludes.length ? new DockerIgnore(excludes.join('\n')) : undefined;
    const parents = flags.has('parents') && flags.get('parents') !== 'false';
    for (const f of ['checksum', 'keep-git-dir']) {
      if (flags.has(f)) throw new BuildFailure(`${cmd} --${f} is only for remote sources, which this builder does not fetch`);
    }
    let view: RootView | undefined;
    let heredocs: BuildContext | undefined;
    try {
      // Where the sources come from: the context, a stage or an image, or the heredocs.
      let fromTree: DiskTree | undefined;
      let fromContext = true;
      let fromKey = 'context';
      if (fromFlag) {
        const ref = x.word(fromFlag);
        const idx = this.stageIndex(ref, stage.index);
        let cfg: ImageConfig;
        if (idx !== undefined) {
          const r = await this.results.get(idx)!;
          cfg = r.config;
          fromKey = r.key;
        } else {
          const img = this.engine.imageStore.resolve(ref);
          if (!img) throw new BuildFailure(`invalid from flag value ${ref}: pull access denied for ${ref}, repository does not exist or may require 'docker login'`);
          cfg = img.config;
          fromKey = img.record.id;
        }
        view = await mountLayers(this.layerDirs(cfg), this.tmpRoot, this.emptyDir);
        fromTree = new DiskTree(view.path);
        fromContext = false;
      }
      const heredocFiles = ins.heredocs.map((h) => h.name);
      let heredocSources: Source[] = [];
      const plain = srcWords.filter((w) => !(w.startsWith('<<') && heredocNames.has(w.replace(/^<<-?["']?|["']?$/g, ''))));
      if (ins.heredocs.length) {
        // Like the context: hashed from memory, written out only on a cache miss.
        const files = ins.heredocs.map((h) => ({ name: h.name, content: h.expand ? x.heredoc(h.content) : h.content }));
        heredocs = await BuildContext.fromFiles(files, join(this.tmpRoot, `heredoc-${randomBytes(6).toString('hex')}`));
        heredocSources = await findSources(heredocs, heredocFiles, undefined, cmd, false);
      }
      for (const w of plain) {
        if (/^https?:\/\//i.test(w)) {
          if (cmd === 'COPY') throw new BuildFailure(`source can't be a URL for COPY`);
          throw new BuildFailure(`ADD failed: remote sources are not supported by this builder: ${w}`);
        }
      }
      const ignore = fromContext ? this.req.ignore : undefined;
      // Context sources are found and hashed in the context as received; only a cache miss needs them on disk.
      const found = plain.length ? await findSources(fromTree ?? this.req.context, plain, ignore, cmd, fromContext, exclude) : [];
      const { kind, hash } = await hashSources([...heredocSources, ...found], ignore, exclude);
      const createdBy = nopHistory1(run, `${cmd} ${kind}:${hash} in ${destRaw} `);
      const chownSpec = flags.get('chown') ? x.word(flags.get('chown')!) : undefined;
      await this.cached(si, st, [cmd, createdBy, chownSpec, chmod, dest, isDir, fromKey, excludes, parents], async () => {
        const lowers = this.layerDirs(st.config);
        const chown = chownSpec ? await resolveChown(lowers, chownSpec) : undefined;
        const stageDir = join(this.tmpRoot, `copy-${randomBytes(6).toString('hex')}`);
        await mkdir(stageDir, { mode: 0o755 });
        try {
          const onDisk = fromTree || !plain.length ? (found as Array<Source<DiskTree>>) : await findSources(new DiskTree(await this.req.context.directory()), plain, ignore, cmd, true, exclude);
          const heredocsOnDisk = heredocs ? await findSources(new DiskTree(await heredocs.directory()), heredocFiles, undefined, cmd, false) : [];
          await copyInto({ stage: stageDir, lowerTopFirst: lowers, dest, chown, chmod, unpack: cmd === 'ADD', ignore, exclude, parents }, [...heredocsOnDisk, ...onDisk], isDir);
          const snap = await snapshotLayer(this.engine.layers, stageDir, topChain(st.config), { move: true });
          return childConfig(st.config, { run, createdBy, diffId: snap.diffId });
        } finally {
          await removeTree(stageDir);
        }
      });
    } finally {
      await view?.release();
      await heredocs?.dispose();
    }
  }
}

interface ParsedMount {
  type: 'bind' | 'cache' | 'tmpfs' | 'secret';
  target: string;
  source?: string;
  from?: string;
  fromStage?: number;
  id?: string;
  readonly?: boolean;
  required: boolean;
  mode?: number;
  uid?: number;
  gid?: number;
  size?: string;
}

/** `--chown=user[:group]`: names from the image; a user alone sets the group to the same number. */
async function resolveChown(lowers: string[], spec: string): Promise<{ uid: number; gid: number }> {
  const [u = '', g] = spec.split(':', 2);
  let uid: number;
  if (/^\d+$/.test(u)) uid = Number(u);
  else {
    try {
      uid = (await resolveUser(lowers, u, [])).uid;
    } catch (err) {
      throw new BuildFailure(`unable to convert uid/gid chown string to host mapping: ${errorMessage(err)}`);
    }
  }
  let gid = uid;
  if (g !== undefined && g !== '') {
    if (/^\d+$/.test(g)) gid = Number(g);
    else {
      try {
        gid = (await resolveUser(lowers, `0:${g}`, [])).gid;
      } catch (err) {
        throw new BuildFailure(`unable to convert uid/gid chown string to host mapping: ${errorMessage(err)}`);
      }
    }
  }
  return { uid, gid };
}
