/**
 * dockerode.ts as the CLI bundle has it (scripts/bundle-cli.ts puts this file in its place): dockerode is part
 * of the bundle, compiled from its code cache, and the build swaps in the same deferred stand-ins for its gRPC and
 * SSH parts that dockerode.ts sets up through the require cache.
 */
import Dockerode from 'dockerode';

export function dockerodeClass(): typeof Dockerode {
  return Dockerode;
}
