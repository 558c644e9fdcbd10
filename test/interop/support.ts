/** Something a test opened and must close (servers, registries, watches, child processes). */
export interface Closable {
  close(): Promise<unknown> | unknown;
}

/**
 * A list of things to close after each test of the calling suite, last opened first (registers
 * the mocha afterEach hook; call it inside describe()).
 */
export function closedAfterEach(): Closable[] {
  const toClose: Closable[] = [];
  afterEach(async () => {
    await Promise.allSettled(
      toClose
        .splice(0)
        .reverse()
        .map(async (c) => c.close()),
    );
  });
  return toClose;
}
