import type { Command } from '../command.ts';
import { println } from '../command.ts';
import { parseTemplate } from '../format/template.ts';
import { humanBinarySize } from '../../util/units.ts';

interface VersionInfo {
  Version: string;
  ApiVersion: string;
  MinAPIVersion: string;
  GitCommit: string;
  GoVersion: string;
  Os: string;
  Arch: string;
  KernelVersion: string;
  BuildTime: string;
}

export const commands: Command[] = [
  {
    name: 'version',
    use: 'berth version [OPTIONS]',
    short: 'Show the berth version information',
    flags: [{ name: 'format', short: 'f', type: 'string', description: 'Format output using a custom template' }],
    maxArgs: 0,
    async run(ctx, f) {
      const client = { Version: '0.1.0', ApiVersion: '1.51', Os: process.platform, Arch: process.arch === 'x64' ? 'amd64' : process.arch, NodeVersion: process.versions.node };
      let server: VersionInfo | undefined;
      let serverErr: string | undefined;
      try {
        server = await ctx.client.get<VersionInfo>('/version');
      } catch (err) {
        serverErr = (err as Error).message;
      }
      const format = f.str('format');
      if (format) {
        println(ctx, parseTemplate(format).execute({ Client: client, Server: server ?? null }));
      } else {
        println(ctx, `Client:\n Version:           ${client.Version}\n API version:       ${client.ApiVersion}\n Node version:      ${client.NodeVersion}\n OS/Arch:           ${client.Os}/${client.Arch}`);
        if (server) {
          println(ctx, `\nServer:\n Engine:\n  Version:          ${server.Version}\n  API version:      ${server.ApiVersion} (minimum version ${server.MinAPIVersion})\n  OS/Arch:          ${server.Os}/${server.Arch}\n  Kernel:           ${server.KernelVersion}`);
        }
      }
      if (serverErr) {
        ctx.err.write(`${serverErr}\n`);
        return 1;
      }
    },
  },
  {
    name: 'info',
    use: 'berth info [OPTIONS]',
    short: 'Display system-wide information',
    flags: [{ name: 'format', short: 'f', type: 'string', description: 'Format output using a custom template' }],
    maxArgs: 0,
    async run(ctx, f) {
      const info = await ctx.client.get<Record<string, unknown>>('/info');
      const format = f.str('format');
      if (format) {
        println(ctx, parseTemplate(format).execute(info));
        return;
      }
      const i = info as Record<string, string | number>;
      println(ctx, [
        'Server:',
        ` Containers: ${i.Containers}`,
        `  Running: ${i.ContainersRunning}`,
        `  Paused: ${i.ContainersPaused}`,
        `  Stopped: ${i.ContainersStopped}`,
        ` Images: ${i.Images}`,
        ` Server Version: ${i.ServerVersion}`,
        ` Storage Driver: ${i.Driver}`,
        ` Logging Driver: ${i.LoggingDriver}`,
        ` Cgroup Driver: ${i.CgroupDriver}`,
        ` Cgroup Version: ${i.CgroupVersion}`,
        ` Default Runtime: ${i.DefaultRuntime}`,
        ` Kernel Version: ${i.KernelVersion}`,
        ` Operating System: ${i.OperatingSystem}`,
        ` OSType: ${i.OSType}`,
        ` Architecture: ${i.Architecture}`,
        ` CPUs: ${i.NCPU}`,
        ` Total Memory: ${humanBinarySize(Number(i.MemTotal))}`,
        ` Name: ${i.Name}`,
        ` ID: ${i.ID}`,
        ` Berth Root Dir: ${i.DockerRootDir}`,
        ` Debug Mode: ${i.Debug}`,
        ` Live Restore Enabled: ${i.LiveRestoreEnabled}`,
      ].join('\n'));
    },
  },
];
