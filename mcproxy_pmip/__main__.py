"""``python -m mcproxy_pmip``: the daemon's command line."""

import sys

from mcproxy_pmip.cli import main

sys.exit(main())
