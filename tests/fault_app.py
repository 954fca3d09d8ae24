"""An application that keeps making spans while the test stops and starts the Collector.

Reads commands on stdin: ``spans NAME COUNT`` records COUNT spans named NAME
(and answers ``ok NAME``), ``flush`` exports what is queued (``flushed``),
``quit`` prints the drop counts as JSON and exits.
"""

import json
import sys

from opentelemetry import trace

import threadline as tl
from threadline import diagnostics
from threadline.tracing import configure

provider = configure(service_name="fault-app")
tracer = trace.get_tracer("fault-app")
for line in sys.stdin:
    command, *args = line.split()
    if command == "spans":
        name, count = args[0], int(args[1])
        with tl.request.scope(request_id=name):
            for _ in range(count):
                with tracer.start_as_current_span(name):
                    pass
        print(f"ok {name}", flush=True)
    elif command == "flush":
        assert provider is not None
        provider.force_flush(10_000)
        print("flushed", flush=True)
    elif command == "quit":
        print(json.dumps(diagnostics.drop_counts()), flush=True)
        break
