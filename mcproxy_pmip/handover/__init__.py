"""Prepared handovers, sans-IO: the data a MAG keeps for a mobile node before it arrives (docs/handover.md)."""
