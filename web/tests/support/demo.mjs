// A real `handoff demo` for one test file: on 127.0.0.1, port 0, its data in a temporary
// directory, at `--speed N`. Resolves once it prints the page address and the admin token (the
// relay starts a few seconds later and runs on); `over` follows it, bounded, to its end.

import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { BIN } from './server.mjs';

export async function startDemo({ speed, finishWithinS = 120 }) {
  const dir = await mkdtemp(join(tmpdir(), 'handoff-demo-'));
  const child = spawn(BIN, ['demo', '--listen', '127.0.0.1:0', '--speed', String(speed), '--data', dir], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stderr.on('data', (d) => { out += d; });
  const exited = new Promise((ok) => child.on('exit', ok));
  let ended;
  const over = new Promise((ok, fail) => {
    ended = ok;
    setTimeout(() => fail(new Error(`the demo did not finish in ${finishWithinS} s:\n${out}`)), finishWithinS * 1000).unref();
  });
  over.catch(() => {});
  const { base, admin } = await new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`the demo did not start in 60 s:\n${out}`)), 60000);
    child.stdout.on('data', (d) => {
      out += d;
      const page = out.match(/live page\s+(http:\/\/127\.0\.0\.1:\d+)\//);
      const token = out.match(/admin token\s+(\S+)/);
      if (page && token) {
        clearTimeout(timer);
        ok({ base: page[1], admin: token[1] });
      }
      if (out.includes('The relay is over')) ended();
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      fail(new Error(`the demo exited (${code}) early:\n${out}`));
    });
  });
  return {
    base,
    admin,
    /** Resolves when the demo says the relay is over (rejects after `finishWithinS`). */
    over,
    /** What the demo printed so far. */
    out: () => out,
    /** Stops it (Ctrl-C, then SIGKILL after 5 s) and removes its data. */
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGINT');
        const killer = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(killer);
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}
