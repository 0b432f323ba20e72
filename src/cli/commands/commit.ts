/** `berth commit`: a container's changes as a new image (POST /commit). */
import type { Command } from '../command.ts';
import { println } from '../command.ts';

const commit: Command = {
  name: 'commit',
  use: 'berth commit [OPTIONS] CONTAINER [REPOSITORY[:TAG]]',
  short: "Create a new image from a container's changes",
  flags: [
    { name: 'author', short: 'a', type: 'string', description: 'Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")' },
    { name: 'change', short: 'c', type: 'list', description: 'Apply Dockerfile instruction to the created image' },
    { name: 'message', short: 'm', type: 'string', description: 'Commit message' },
    { name: 'pause', short: 'p', type: 'bool', description: 'Pause container during commit (default true)' },
    { name: 'no-pause', type: 'bool', description: 'Do not pause the container during commit' },
  ],
  minArgs: 1,
  maxArgs: 2,
  async run(ctx, f, args) {
    let repo: string | undefined;
    let tag: string | undefined;
    if (args[1]) {
      const ref = args[1];
      const slash = ref.lastIndexOf('/');
      const colon = ref.lastIndexOf(':');
      if (colon > slash && !ref.includes('@')) {
        repo = ref.slice(0, colon);
        tag = ref.slice(colon + 1);
      } else repo = ref;
    }
    const pause = f.has('pause') ? f.bool('pause') : !f.bool('no-pause');
    const r = await ctx.client.post<{ Id: string }>('/commit', {}, {
      container: args[0]!,
      repo,
      tag,
      comment: f.str('message'),
      author: f.str('author'),
      changes: f.list('change'),
      pause,
    });
    println(ctx, r.Id);
  },
};

export const commands: Command[] = [commit];
