/**
 * HTTP in one file: two node:http servers register as "echo" through serveHttp(), and fetch()
 * reaches them by service name through a WayfinderAgent (round_robin). The README's "HTTP in ten
 * lines" is this program. Run it:
 *
 *   node --import tsx examples/http/main.ts     (WAYFINDER_REGISTRY picks the registry; default: the file registry)
 *
 * In an application, import from 'wayfinder-discovery' and 'wayfinder-discovery/http'.
 */
import '../../builtins'; // the built-in registries and balancers
import * as http from 'node:http';
import { Discovery } from '../../core';
import { WayfinderAgent, serveHttp } from '../../http';

async function main() {
  const discovery = await Discovery.fromConfig(); // WAYFINDER_REGISTRY, else the file registry

  const servers = [];
  for (const name of ['a', 'b']) {
    const server = http.createServer((req, res) => res.end(`hello from ${name} (${req.headers.host}${req.url})`));
    servers.push(await serveHttp(server, { discovery, service: 'echo', host: '127.0.0.1' })); // listen + register
  }

  const agent = new WayfinderAgent({ discovery }); // an undici Dispatcher; host = service name
  for (let i = 0; i < 4; i++) {
    const res = await fetch('http://echo/invoices', { dispatcher: agent } as unknown as RequestInit);
    console.log(await res.text());
  }

  await agent.close();
  await Promise.all(servers.map((s) => s.stop({ force: true }))); // stop(): deregister, drain, close
  await discovery.close();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
