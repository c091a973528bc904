"""Discrete-event handover simulator on the daemon's own sans-IO engine (``mcproxy-pmip-sim``).

The membership engine (``mcproxy_pmip.membership``) and the pmipv6 plugin's
binding table run unchanged under a virtual clock; the network, the radio and
the data streams around them are modelled (docs/simulation.md).
"""
