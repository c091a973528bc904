"""Data planes: the port the proxy layer forwards through, and its implementations."""
