"""The daemon beside the other IGMP/MLD proxies: ``proxybench.py`` under its former name.

Kept so that existing commands go on working; it runs ``proxybench.main``
with the same arguments (see ``proxybench.py --help``):

    sudo .venv/bin/python bench/daemon_bench.py             # ours (nftables, mroute), igmpproxy; both families
    sudo .venv/bin/python bench/daemon_bench.py --quick     # a short run
"""

from __future__ import annotations

import sys

from proxybench import main

if __name__ == "__main__":
    sys.exit(main())
