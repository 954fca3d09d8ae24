"""HTTP: the exchange core every server and client adapter is a page of adaptation over.

- `server`: `ServerExchange`, one incoming request from its headers to its access line,
  read through the adapter's `ServerReader`;
- `client`: `ClientExchange`, one outgoing call, each redirect decided again;
- `options`: `ServerOptions` and `ClientOptions`, frozen and checked once;
- `incoming`: the incoming fields within their limits, the trust decision, the request id;
- `hosts`: the host allow-list for baggage and the request id;
- `semconv`: span names and attributes, and what status counts as an error;
- `access`: the access line and the unhandled-exception line.
"""
