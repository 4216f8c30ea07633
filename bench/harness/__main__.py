"""``python -m bench.harness --serve-bare PORT``: the bare FastAPI baseline, in its own process."""

import sys

from bench.harness.servers import main

sys.exit(main())
