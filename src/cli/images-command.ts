import { buildImages } from '../../runner/images.js';
import { ClawboxError } from '../errors.js';
import { parseCommandArgs } from './args.js';

export const IMAGES_HELP = `Usage: clawbox images build [--force]

Builds openclaw-sandbox:latest and clawbox-gateway:latest locally (debootstrap + docker import; no registry).
Skipped when an image is up to date with its inputs; --force rebuilds.`;

export async function imagesCommand(args: readonly string[]): Promise<number> {
  const [sub, ...rest] = args;
  const { values } = parseCommandArgs('images', rest, { force: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } });
  if (values.help || sub === '--help' || sub === '-h') {
    process.stdout.write(`${IMAGES_HELP}\n`);
    return 0;
  }
  if (sub !== 'build') throw new ClawboxError('CLI_USAGE', `clawbox images: unknown subcommand '${sub ?? ''}'`, { details: ["use 'clawbox images build'"] });
  const started = Date.now();
  const built = await buildImages({
    force: values.force === true,
    onProgress: (step) => process.stderr.write(`[${((Date.now() - started) / 1000).toFixed(1).padStart(5)} s] ${step}\n`),
  });
  for (const image of built) process.stdout.write(`${image.image}: ${image.built ? 'built' : 'up to date'} (${image.digest.slice(0, 12)})\n`);
  return 0;
}
