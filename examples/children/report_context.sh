#!/bin/sh
# A shell child: reads the W3C context threadline put in its environment.
# traceparent is version-traceid-parentid-flags; the request id is the baggage
# member request.request_id (percent-encoded; this one needs no decoding).
trace_id=$(printf '%s' "$TRACEPARENT" | cut -d- -f2)
request_id=$(printf '%s' "$BAGGAGE" | tr ',' '\n' | sed -n 's/^request\.request_id=\([^;]*\).*/\1/p')
echo "shell child: trace_id=$trace_id request_id=$request_id"
