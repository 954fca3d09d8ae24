// A Node.js service between two threadline services that knows nothing of
// threadline: like many services and meshes, it forwards `traceparent` and
// `baggage` and nothing else (no X-Request-ID). AsyncLocalStorage keeps the
// incoming headers for the outgoing call, as a Node service would.
//
// Usage: node relay.js DOWNSTREAM_URL   (prints its own URL, then serves)
"use strict";
const http = require("node:http");
const { AsyncLocalStorage } = require("node:async_hooks");

const downstream = process.argv[2];
const incoming = new AsyncLocalStorage();

async function callDownstream() {
  const headers = {};
  for (const name of ["traceparent", "baggage"]) {
    const value = incoming.getStore()[name];
    if (value !== undefined) headers[name] = value;
  }
  const response = await fetch(downstream, { headers });
  return { status: response.status, body: await response.text() };
}

const server = http.createServer((request, response) => {
  incoming.run(request.headers, async () => {
    try {
      const { status, body } = await callDownstream();
      response.writeHead(status, { "content-type": "application/json" });
      response.end(body);
    } catch (error) {
      response.writeHead(502);
      response.end(String(error));
    }
  });
});

server.listen(0, "127.0.0.1", () => {
  console.log(`http://127.0.0.1:${server.address().port}`);
});
process.on("SIGTERM", () => server.close(() => process.exit(0)));
