/** Test support for the CLI suites: an Io that records output and is interrupted on demand. */
export function capture() {
  const out: string[] = [];
  const err: string[] = [];
  let stop: (s: string) => void = () => {};
  const stopped = new Promise<string>((r) => (stop = r));
  const hangupListeners = new Set<() => void>();
  return {
    out,
    err,
    stop,
    /** As a SIGHUP would: every listener registered through io.hangups() is called. */
    hangup: () => {
      for (const fn of [...hangupListeners]) fn();
    },
    io: {
      out: (s: string) => out.push(s),
      err: (s: string) => err.push(s),
      isTTY: false,
      interrupted: () => stopped,
      hangups: (fn: () => void) => {
        hangupListeners.add(fn);
        return () => void hangupListeners.delete(fn);
      },
    },
  };
}
