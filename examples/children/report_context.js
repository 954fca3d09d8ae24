// A Node.js child: reads the W3C context threadline put in its environment.
const [, traceId, parentId] = (process.env.TRACEPARENT || "").split("-");
const members = Object.fromEntries(
  (process.env.BAGGAGE || "")
    .split(",")
    .filter((member) => member.trim())
    .map((member) => {
      const [pair] = member.split(";"); // properties (";tl", ";tl=json") follow the value
      const at = pair.indexOf("=");
      return [pair.slice(0, at).trim(), decodeURIComponent(pair.slice(at + 1).trim())];
    }),
);
console.log(
  `node child: trace_id=${traceId} request_id=${members["request.request_id"]} ` +
    `user_id=${JSON.parse(members["request.user_id"] ?? "null")} parent_id=${parentId}`,
);
