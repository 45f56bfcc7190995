// Stops a command that needs root at once, with the advice, instead of letting it fail later on a permission error
// somewhere inside (the Docker socket, `ip addr add` on lo, iptables).
const [what = 'this command', why = 'it needs root'] = process.argv.slice(2);
if (process.getuid?.() !== 0) {
  process.stderr.write(`${what} must run as root (${why}); try: sudo sh -c 'scripts/setup.sh && npm test'\n`);
  process.exit(1);
}
