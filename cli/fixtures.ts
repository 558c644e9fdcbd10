/** Test support for the CLI suites: an Io that records output and is interrupted on demand. */
export function capture() {
  const out: string[] = [];
  const err: string[] = [];
  let stop: (s: string) => void = () => {};
  const stopped = new Promise<string>((r) => (stop = r));
  return {
    out,
    err,
    stop,
    io: { out: (s: string) => out.push(s), err: (s: string) => err.push(s), isTTY: false, interrupted: () => stopped },
  };
}
