"""The sans-IO membership engine: router side, host side, the RFC 4605 merge.

No sockets, no reactor, no clock reads: every entry point takes ``now``
(seconds, float), deadlines are pulled with ``get_timer()`` and fired with
``handle_timer(now)``, and outputs are returned as actions
(``mcproxy_pmip.membership.actions``).
"""
